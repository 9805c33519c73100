// Control-plane routes of E2B's template API (docs: README "Templates"):
//   POST   /v3/templates                              202 {templateID, buildID, tags, names,
//   aliases, public} POST   /v2/templates/{id}/builds/{buildID}         202, no body (the steps;
//   queued) GET    /templates/{id}/builds/{buildID}/status     200 {templateID, buildID, status,
//   logEntries, logs, reason?} GET    /templates/{id}/builds/{buildID}/logs       200 {logs:
//   [entry]} GET    /templates/{id}/files/{hash}                201 {present, url?} GET
//   /templates/aliases/{name}                   200 {templateID, public} | 403 another key's | 404
//   POST   /templates/tags                             201 {buildID, tags}
//   DELETE /templates/tags                             204
//   GET    /templates/{id}/tags                        200 [{tag, buildID, createdAt}]
//   GET    /templates, /v2/templates                   200 [Template]
//   GET    /templates/{id}                             200 TemplateWithBuilds
//   PATCH  /templates/{id}, /v2/templates/{id}         200 (public)
//   DELETE /templates/{id}                             204 (running sandboxes keep running)
// {id} is a template id or a name. Errors are {code, message}. Authentication happens
// before (http/server.cc); the upload PUT has its own (control/template_files.h).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <string>

#include "server/control/template_builder.h"
#include "server/control/template_catalog.h"
#include "server/control/template_files.h"
#include "server/control/tenancy.h"
#include "server/http/types.h"

namespace isobox::server {

struct TemplateService {
  TemplateCatalog& catalog;
  TemplateBuilder& builder;
  TemplateFiles& files;
};

struct TemplatesContext {
  TemplateService& service;
  asio::thread_pool& workers;
  Tenant tenant;
  std::string origin;  // scheme://host[:port] the client used: upload URLs start with it
};

// Whether the path (no query) is a template route: /templates..., /v2/templates...,
// /v3/templates.
bool IsTemplatesPath(std::string_view path);

Task<StringResponse> HandleTemplates(const http::request<http::string_body>& request,
                                     TemplatesContext& context);

}  // namespace isobox::server
