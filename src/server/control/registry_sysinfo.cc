// sysinfo(2) in a sandbox, answered by isoboxd (runtime/sysinfo.h): the registry's part.
#include <utility>

#include "runtime/cgroup.h"
#include "runtime/sysinfo.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"

namespace isobox::server {

Status Registry::AnswerSysinfo(const Sandbox& sandbox, UniqueFd listener) {
  if (!sysinfo_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "its sysinfo calls wait for isoboxd's sysinfo thread, which did not start");
  }
  // The figures of /proc/meminfo's view (runtime/limits_view.h): the template's memory as
  // the total, the usage of the sandbox's whole group (envd included) as what is used.
  runtime::SysinfoSource source;
  source.memory_limit = uint64_t{sandbox.info.memory_mb} << 20;
  source.init_start_ticks = sandbox.init_start_ticks;
  ASSIGN_OR_RETURN(source.memory_usage,
                   sandbox.cgroup->OpenCounterFile(runtime::CgroupCounter::kMemoryUsage));
  ASSIGN_OR_RETURN(source.tasks, sandbox.cgroup->OpenCounterFile(runtime::CgroupCounter::kTasks));
  return sysinfo_->Add(sandbox.info.id, std::move(listener), std::move(source));
}

Status Registry::AdoptSysinfo(const Sandbox& sandbox) {
  // The init keeps a copy of its listener (containment step "keep seccomp listener"):
  // calls made while no isoboxd ran have waited for this one.
  ASSIGN_OR_RETURN(UniqueFd listener,
                   runtime::TakeSysinfoListener(sandbox.process.init.Pidfd(), sandbox.state_dir));
  if (!listener) return Ok();  // started without one: its sysinfo is the host's
  return AnswerSysinfo(sandbox, std::move(listener));
}

}  // namespace isobox::server
