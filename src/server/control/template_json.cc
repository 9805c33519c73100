#include "server/control/template_json.h"

#include <boost/json.hpp>

namespace isobox::server {
namespace json = boost::json;

json::object TemplateJson(const Template& tmpl) {
  json::array layers;
  for (const auto& path : tmpl.store_layers) layers.push_back(json::string(path.string()));
  json::object env;
  for (const auto& [key, value] : tmpl.env) env[key] = value;
  return json::object{{"id", tmpl.id},
                      {"rootLayer", tmpl.root_layer.string()},
                      {"usrLayer", tmpl.usr_layer.string()},
                      {"storeLayers", std::move(layers)},
                      {"cpuCount", tmpl.cpu_count},
                      {"memoryMB", tmpl.memory_mb},
                      {"diskMB", tmpl.disk_mb},
                      {"pidsMax", tmpl.pids_max},
                      {"interpreter", tmpl.interpreter},
                      {"buildID", tmpl.build_id},
                      {"alias", tmpl.alias},
                      {"env", std::move(env)},
                      {"user", tmpl.user},
                      {"workdir", tmpl.workdir},
                      {"startCmd", tmpl.start_cmd},
                      {"readyCmd", tmpl.ready_cmd},
                      {"shell", tmpl.shell}};
}

Result<Template> TemplateFromJson(const json::object& t) {
  Template tmpl;
  try {
    tmpl.id = json::value_to<std::string>(t.at("id"));
    tmpl.root_layer = json::value_to<std::string>(t.at("rootLayer"));
    tmpl.usr_layer = json::value_to<std::string>(t.at("usrLayer"));
    for (const json::value& layer : t.at("storeLayers").as_array()) {
      tmpl.store_layers.emplace_back(json::value_to<std::string>(layer));
    }
    tmpl.cpu_count = static_cast<uint32_t>(t.at("cpuCount").to_number<int64_t>());
    tmpl.memory_mb = static_cast<uint32_t>(t.at("memoryMB").to_number<int64_t>());
    tmpl.disk_mb = static_cast<uint32_t>(t.at("diskMB").to_number<int64_t>());
    tmpl.pids_max = static_cast<uint64_t>(t.at("pidsMax").to_number<int64_t>());
    tmpl.interpreter = t.at("interpreter").as_bool();
    tmpl.build_id = json::value_to<std::string>(t.at("buildID"));
    tmpl.alias = json::value_to<std::string>(t.at("alias"));
    for (const auto& [key, val] : t.at("env").as_object()) {
      tmpl.env[std::string(key)] = json::value_to<std::string>(val);
    }
    tmpl.user = json::value_to<std::string>(t.at("user"));
    tmpl.workdir = json::value_to<std::string>(t.at("workdir"));
    tmpl.start_cmd = json::value_to<std::string>(t.at("startCmd"));
    tmpl.ready_cmd = json::value_to<std::string>(t.at("readyCmd"));
    tmpl.shell = json::value_to<std::string>(t.at("shell"));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "template record: {}", e.what());
  }
  return tmpl;
}

}  // namespace isobox::server
