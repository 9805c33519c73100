// A template as isoboxd writes it beside what it keeps of a sandbox (a park record, a
// snapshot): its layers, limits and defaults, enough to start or restore a sandbox of it
// again after a restart, whatever the template's store says by then.
#pragma once

#include <boost/json/object.hpp>

#include "base/result.h"
#include "server/control/templates.h"

namespace isobox::server {

boost::json::object TemplateJson(const Template& tmpl);
// kInternal naming the missing or mistyped field (the JSON is isoboxd's own).
Result<Template> TemplateFromJson(const boost::json::object& object);

}  // namespace isobox::server
