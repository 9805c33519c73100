// The template API bodies and names (protocol/template_build.h, template_names.h): any API
// key holder sends them. The input is parsed as JSON and given to every body parser; the
// raw text is also parsed as a "name[:tag]". A build spec that parses must survive the
// store/load round trip unchanged; names and tags that parse must be in their normal form.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/template_build.h"

namespace {

using namespace isobox::protocol;

void Check(bool ok) {
  if (!ok) std::abort();
}

// A normalised tag parses to itself.
void CheckTags(const std::vector<std::string>& tags) {
  for (size_t i = 0; i < tags.size(); ++i) {
    auto again = ParseTag(tags[i]);
    Check(again && *again == tags[i]);
    for (size_t j = 0; j < i; ++j) Check(tags[j] != tags[i]);
  }
}

void CheckRef(const TemplateRef& ref) {
  auto again = ParseTemplateRef(ref.tag.empty() ? ref.name : ref.name + ":" + ref.tag);
  Check(again && *again == ref);
}

void CheckSpec(const TemplateBuildSpec& spec) {
  Check(spec.from_image.empty() != spec.from_template.empty());
  auto again = ParseTemplateBuildSpec(TemplateBuildSpecToJson(spec, true));
  Check(again && *again == spec);
  boost::json::object public_view = TemplateBuildSpecToJson(spec, false);
  Check(!public_view.contains("fromImageRegistry"));
  if (!spec.from_template.empty()) {
    auto ref = ParseTemplateRef(spec.from_template);
    Check(ref.has_value());
  }
  for (const TemplateStep& step : spec.steps) {
    Check((step.type == StepType::kCopy) == !step.files_hash.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto ref = ParseTemplateRef(text)) CheckRef(*ref);
  if (auto tag = ParseTag(text)) CheckTags({*tag});

  boost::json::error_code error;
  boost::json::value body = boost::json::parse(text, error);
  if (error) return 0;
  if (auto spec = ParseTemplateBuildSpec(body)) CheckSpec(*spec);
  if (auto request = ParseTemplateRequest(body)) {
    CheckRef(request->ref);
    CheckTags(request->tags);
  }
  if (auto assignment = ParseTagAssignment(body)) {
    CheckRef(assignment->target);
    CheckTags(assignment->tags);
    Check(!assignment->tags.empty());
  }
  if (auto removal = ParseTagRemoval(body)) {
    CheckRef(TemplateRef{removal->name, ""});
    CheckTags(removal->tags);
    Check(!removal->tags.empty());
    for (const std::string& tag : removal->tags) Check(tag != "default");
  }
  return 0;
}
