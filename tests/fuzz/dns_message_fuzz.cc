// DNS messages (net/dns_message.h): queries come from sandboxes, replies from upstream
// servers, names from Host headers and TLS SNIs. Whatever parses must survive being
// built again and parsed back to the same thing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "net/dns_message.h"

namespace dns = isobox::net::dns;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  if (auto name = dns::NameFromText(input)) {
    auto again = dns::NameFromText(dns::NameToText(*name));
    if (!again || again->wire != name->wire) std::abort();
  }

  if (auto query = dns::ParseQuery(input, dns::kMaxMessage)) {
    (void)dns::NameToText(query->question.name);
    // The resolver's own answers to a query (REFUSED, SERVFAIL, TC) must parse as replies
    // to it.
    auto reply = dns::ParseReply(dns::BuildEmptyReply(*query, dns::Rcode::kServFail, true));
    if (!reply || reply->question != query->question || reply->header.id != query->header.id ||
        !reply->header.tc() || !reply->answers.empty()) {
      std::abort();
    }
  }

  auto reply = dns::ParseReply(input);
  if (!reply) return 0;
  std::vector<dns::Record> records;
  for (const dns::Record& record : reply->answers) {
    (void)dns::NameToText(record.name);
    if (record.Address() || record.CnameTarget()) records.push_back(record);
  }
  // A and CNAME records are decompressed: written out uncompressed they read the same.
  dns::Head head{reply->header, reply->question};
  auto again = dns::ParseReply(dns::BuildReply(head, reply->header.rcode(), records));
  if (!again || again->question != reply->question || again->answers.size() != records.size()) {
    std::abort();
  }
  for (size_t i = 0; i < records.size(); ++i) {
    const dns::Record& a = records[i];
    const dns::Record& b = again->answers[i];
    if (!(a.name == b.name) || a.type != b.type || a.ttl != b.ttl || a.rdata != b.rdata) {
      std::abort();
    }
  }
  return 0;
}
