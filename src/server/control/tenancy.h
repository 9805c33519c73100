// Tenancy: who a control-plane request acts for, and which sandboxes it may see.
//
// Each sandbox records the API key that created it (SandboxInfo::owner). A key sees,
// connects to, pauses, kills and reads the audit records of its own sandboxes only; an
// admin key sees every sandbox and the operator routes (/isobox/pools, /isobox/metrics).
// A sandbox of another key is answered exactly as one that does not exist.
#pragma once

#include <string>

#include "server/control/sandbox_info.h"

namespace isobox::server {

struct Tenant {
  std::string key_id;  // the API key's public id: 12 hex digits (store/store.h ApiKeyId)
  bool admin = false;

  // The audit trail's name for the key (ops/audit.h).
  std::string Actor() const { return "key:" + key_id; }

  // SECURITY: the one ownership check of the control plane. Without it any key could
  // list, connect to, pause or kill every tenant's sandboxes. A sandbox without an owner
  // (made before owners were recorded) is an admin key's only.
  bool Sees(const SandboxInfo& info) const {
    return admin || (!info.owner.empty() && info.owner == key_id);
  }
};

}  // namespace isobox::server
