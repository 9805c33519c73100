#include "server/ops/ops.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace isobox::server::ops {
namespace {

namespace json = boost::json;

TEST(OpsTest, ControlRoutesAreTemplatesNotRawPaths) {
  auto create = ClassifyControl("POST", "/v2/sandboxes");
  EXPECT_EQ(create.route, "/v2/sandboxes");
  EXPECT_EQ(create.action, "sandbox.create");
  EXPECT_EQ(create.sandbox_id, "");

  auto kill = ClassifyControl("DELETE", "/sandboxes/abc123");
  EXPECT_EQ(kill.route, "/sandboxes/{id}");
  EXPECT_EQ(kill.action, "sandbox.kill");
  EXPECT_EQ(kill.sandbox_id, "abc123");

  EXPECT_EQ(ClassifyControl("GET", "/sandboxes/abc123").action, "");
  EXPECT_EQ(ClassifyControl("POST", "/sandboxes/abc/pause").action, "sandbox.pause");
  EXPECT_EQ(ClassifyControl("POST", "/sandboxes/abc/resume").action, "sandbox.resume");
  EXPECT_EQ(ClassifyControl("POST", "/sandboxes/abc/connect").action, "sandbox.connect");
  EXPECT_EQ(ClassifyControl("POST", "/sandboxes/abc/timeout").action, "sandbox.timeout");
  EXPECT_EQ(ClassifyControl("GET", "/v2/sandboxes?state=running").route, "/v2/sandboxes");
  EXPECT_EQ(ClassifyControl("GET", "/v2/sandboxes?state=running").action, "");
  auto metrics = ClassifyControl("GET", "/sandboxes/abc/metrics?start=1");
  EXPECT_EQ(metrics.route, "/sandboxes/{id}/metrics");
  EXPECT_EQ(metrics.action, "");
  EXPECT_EQ(ClassifyControl("GET", "/isobox/health").route, "/isobox/health");
  // Anything else is one label value, so that random paths cannot grow the series.
  EXPECT_EQ(ClassifyControl("GET", "/sandboxes/abc/whatever").route, "other");
  EXPECT_EQ(ClassifyControl("GET", "/random/path/of/any/length").route, "other");
  EXPECT_EQ(ClassifyControl("GET", "/isobox/other").route, "other");
  EXPECT_EQ(ClassifyControl("", "").route, "other");
}

TEST(OpsTest, SandboxTrafficRoutesByPort) {
  EXPECT_EQ(SandboxRoute(49983), "envd");
  EXPECT_EQ(SandboxRoute(49999), "interpreter");
  EXPECT_EQ(SandboxRoute(8000), "port");
  EXPECT_TRUE(CaptureForAudit(49999, "POST", "/execute"));
  EXPECT_FALSE(CaptureForAudit(49999, "POST", "/contexts"));
  EXPECT_FALSE(CaptureForAudit(49983, "POST", "/execute"));
  EXPECT_FALSE(CaptureForAudit(8000, "POST", "/execute"));
}

TEST(OpsTest, ExecuteDetailsNameLanguageContextAndSizeNeverTheCode) {
  std::string body = R"json({"code":"print('TOP SECRET')","language":"python","context_id":"c1",
                         "env_vars":{"TOKEN":"hunter2"}})json";
  json::object details = ExecuteDetails(body, true, body.size());
  EXPECT_EQ(details.at("language").as_string(), "python");
  EXPECT_EQ(details.at("contextId").as_string(), "c1");
  EXPECT_EQ(details.at("codeBytes").to_number<int64_t>(), 19);  // print('TOP SECRET')
  EXPECT_EQ(details.at("bodyBytes").to_number<uint64_t>(), body.size());
  std::string text = json::serialize(details);
  EXPECT_EQ(text.find("SECRET"), std::string::npos);
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
}

TEST(OpsTest, ExecuteDetailsOfATruncatedOrBadBodyAreItsSizeOnly) {
  EXPECT_EQ(json::serialize(ExecuteDetails(R"({"code":"x)", false, 5000000)),
            R"({"bodyBytes":5000000})");
  EXPECT_EQ(json::serialize(ExecuteDetails("not json", true, 8)), R"({"bodyBytes":8})");
  std::string long_language(500, 'x');
  std::string body = R"({"code":"1","language":")" + long_language + "\"}";
  EXPECT_FALSE(ExecuteDetails(body, true, body.size()).contains("language"));
}

TEST(OpsTest, ControlEventsMoveTheCountersAndTheCreateHistogram) {
  Ops ops(nullptr);
  Caller caller{"key:0123456789ab", "127.0.0.1:1"};
  ops.OnControl({.caller = caller,
                 .method = "POST",
                 .target = "/sandboxes",
                 .request_body = R"({"templateID":"base"})",
                 .status = 201,
                 .response_body = R"({"sandboxID":"abc"})",
                 .elapsed = std::chrono::milliseconds(30)});
  ops.OnControl({.caller = caller, .method = "DELETE", .target = "/sandboxes/abc", .status = 204});
  ops.OnSandboxEvent("def", "kill", "timeout");
  std::string text = ops.RenderMetrics({}, {.made = 3, .reused = 5, .dropped = 1});
  EXPECT_NE(text.find("isobox_http_requests_total{route=\"/sandboxes\",code=\"201\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("isobox_http_requests_total{route=\"/sandboxes/{id}\",code=\"204\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("isobox_sandbox_create_seconds_bucket{le=\"0.025\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("isobox_sandbox_create_seconds_bucket{le=\"0.05\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("isobox_sandbox_ended_total{reason=\"killed\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("isobox_sandbox_ended_total{reason=\"timeout\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("isobox_sandboxes{state=\"running\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("isobox_sandbox_disks_total{outcome=\"reused\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("isobox_sandbox_disks_total{outcome=\"dropped\"} 1\n"), std::string::npos);
}

TEST(OpsTest, OnlyRequestsForLiveSandboxesAreAudited) {
  char pattern[] = "/tmp/isobox-ops-test-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(pattern);
  auto log = AuditLog::Open(dir / "audit.log");
  ASSERT_TRUE(log);
  AuditLog& audit = **log;
  Ops ops(std::move(*log));
  Caller caller{"access-token", "127.0.0.1:1"};
  const std::string live_id = "aaaaaaaaaaaaaaaaaaaa";
  // A command started in a running sandbox, and the same request for ids that name none.
  ops.OnRelay({.caller = caller,
               .sandbox_id = live_id,
               .port = kEnvdPort,
               .method = "POST",
               .path = "/process.Process/Start",
               .status = 200});
  ops.OnRelay({.caller = caller,
               .sandbox_id = "bbbbbbbbbbbbbbbbbbbb",
               .port = kEnvdPort,
               .method = "POST",
               .path = "/process.Process/Start",
               .status = 502,
               .live = false});
  ops.OnRelay({.caller = caller,
               .port = kInterpreterPort,
               .method = "POST",
               .path = "/execute",
               .status = 400,
               .live = false});
  Caller keyed{"key:0123456789ab", "127.0.0.1:2"};
  ops.OnControl(
      {.caller = keyed, .method = "DELETE", .target = "/sandboxes/" + live_id, .status = 204});
  ops.OnControl(
      {.caller = keyed, .method = "DELETE", .target = "/sandboxes/cccccccccccc", .status = 404});
  ops.OnControl({.caller = keyed,
                 .method = "POST",
                 .target = "/sandboxes/" + std::string(5000, 'd') + "/pause",
                 .status = 404});
  ops.OnControl(
      {.caller = keyed, .method = "POST", .target = "/sandboxes/NOT-AN-ID/timeout", .status = 400});
  auto records = audit.Read({.limit = kMaxAuditLimit});
  ASSERT_TRUE(records);
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].at("action").as_string(), "process.start");
  EXPECT_EQ((*records)[0].at("sandboxId").as_string(), live_id);
  EXPECT_EQ((*records)[1].at("action").as_string(), "sandbox.kill");
  EXPECT_EQ((*records)[1].at("sandboxId").as_string(), live_id);
  // Every request is still counted.
  std::string text = ops.RenderMetrics({}, {});
  EXPECT_NE(text.find("isobox_http_requests_total{route=\"envd\",code=\"502\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("isobox_http_requests_total{route=\"interpreter\",code=\"400\"} 1\n"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(OpsTest, FloodCountersAreExposedFromTheStart) {
  Ops ops(nullptr);
  std::string before = ops.RenderMetrics({}, {});
  for (std::string_view series :
       {"isobox_http_connections 0\n",
        "isobox_http_connections_refused_total{reason=\"global\"} 0\n",
        "isobox_http_connections_refused_total{reason=\"per_client\"} 0\n",
        "isobox_http_header_timeouts_total 0\n", "isobox_relay_timeouts_total 0\n",
        "isobox_audit_dropped_records_total 0\n", "isobox_audit_dropped_records 0\n"}) {
    EXPECT_NE(before.find(series), std::string::npos) << series;
  }
  ops.OnConnectionCount(1);
  ops.OnConnectionCount(1);
  ops.OnConnectionCount(-1);
  ops.OnConnectionRefused("per_client");
  ops.OnAcceptError("EMFILE");
  ops.OnHeaderTimeout();
  ops.OnRelayTimeout();
  std::string after = ops.RenderMetrics({}, {});
  for (std::string_view series :
       {"isobox_http_connections 1\n",
        "isobox_http_connections_refused_total{reason=\"per_client\"} 1\n",
        "isobox_http_accept_errors_total{error=\"EMFILE\"} 1\n",
        "isobox_http_header_timeouts_total 1\n", "isobox_relay_timeouts_total 1\n"}) {
    EXPECT_NE(after.find(series), std::string::npos) << series;
  }
}

TEST(OpsTest, ARelayRefusedForItsTokenIsAuditedWithoutTheToken) {
  char pattern[] = "/tmp/isobox-ops-test-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  std::filesystem::path dir = pattern;
  auto log = AuditLog::Open(dir / "audit.log");
  ASSERT_TRUE(log) << log.error().message;
  AuditLog* audit = log->get();
  Ops ops(std::move(*log));
  Caller caller{"access-token", "127.0.0.1:7"};
  // A refused POST /execute: its own action, not "code.execute" (nothing was executed).
  ops.OnRelay({.caller = caller,
               .sandbox_id = "sbx1",
               .port = kInterpreterPort,
               .method = "POST",
               .path = "/execute",
               .status = 401,
               .refused = "wrong access token"});
  audit->Flush();
  auto records = audit->Read({.sandbox_id = "sbx1"});
  ASSERT_TRUE(records) << records.error().message;
  ASSERT_EQ(records->size(), 1u);
  const json::object& record = (*records)[0];
  EXPECT_EQ(record.at("action").as_string(), "sandbox.unauthorized");
  EXPECT_EQ(record.at("status").as_int64(), 401);
  EXPECT_EQ(record.at("actor").as_string(), "access-token");
  const json::object& details = record.at("details").as_object();
  EXPECT_EQ(details.at("port").as_int64(), 49999);
  EXPECT_EQ(details.at("method").as_string(), "POST");
  EXPECT_EQ(details.at("path").as_string(), "/execute");
  EXPECT_EQ(details.at("reason").as_string(), "wrong access token");
  std::string text = ops.RenderMetrics({}, {});
  EXPECT_NE(text.find("isobox_http_requests_total{route=\"interpreter\",code=\"401\"} 1\n"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(OpsTest, NetworkUpdatesAndRefusalsAreAuditedWithCountsNeverEntries) {
  char pattern[] = "/tmp/isobox-ops-test-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(pattern);
  auto log = AuditLog::Open(dir / "audit.log");
  ASSERT_TRUE(log);
  AuditLog& audit = **log;
  Ops ops(std::move(*log));
  const std::string id = "aaaaaaaaaaaaaaaaaaaa";
  Caller caller{"key:0123456789ab", "127.0.0.1:2"};
  ops.OnControl({.caller = caller,
                 .method = "PUT",
                 .target = "/sandboxes/" + id + "/network",
                 .request_body = R"({"allowOut":["198.51.100.0/24","api.example.test"],)"
                                 R"("denyOut":["0.0.0.0/0"],"allowInternetAccess":false})",
                 .status = 204});
  ops.OnNetworkDenied(id, {.source = 0x0acd0002,
                           .destination = 0xc0a8010a,
                           .port = 443,
                           .protocol = 6,
                           .name = "api.example.test",
                           .why = "denied by the rules",
                           .by = "proxy",
                           .held_back = 3});
  auto records = audit.Read({.limit = kMaxAuditLimit});
  ASSERT_TRUE(records);
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].at("action").as_string(), "network.update");
  EXPECT_EQ((*records)[0].at("sandboxId").as_string(), id);
  EXPECT_EQ(boost::json::serialize((*records)[0].at("details")),
            R"({"allowOut":2,"denyOut":1,"internet":false})");
  EXPECT_EQ((*records)[1].at("action").as_string(), "network.denied");
  EXPECT_EQ((*records)[1].at("actor").as_string(), "isoboxd");
  EXPECT_EQ(boost::json::serialize((*records)[1].at("details")),
            R"({"by":"proxy","why":"denied by the rules","address":"192.168.1.10","port":443,)"
            R"("protocol":"tcp","name":"api.example.test","heldBack":3})");
  std::filesystem::remove_all(dir);
}

TEST(OpsTest, NetworkCountersAreOneSeriesPerSandboxOnlyWhenGiven) {
  Ops ops(nullptr);
  NetworkMetrics network{.sandboxes = {{"aaaaaaaaaaaaaaaaaaaa",
                                        {.egress_bytes = 1234,
                                         .egress_packets = 5,
                                         .denied_packets = 6,
                                         .denied_connections = 7}}},
                         .held_back = 8,
                         .logs_lost = 0};
  std::string text = ops.RenderMetrics({}, {}, network);
  for (const char* line :
       {"isobox_sandbox_network_egress_bytes_total{sandbox=\"aaaaaaaaaaaaaaaaaaaa\"} 1234\n",
        "isobox_sandbox_network_egress_packets_total{sandbox=\"aaaaaaaaaaaaaaaaaaaa\"} 5\n",
        "isobox_sandbox_network_denied_packets_total{sandbox=\"aaaaaaaaaaaaaaaaaaaa\"} 6\n",
        "isobox_sandbox_network_denied_connections_total{sandbox=\"aaaaaaaaaaaaaaaaaaaa\"} 7\n",
        "isobox_network_denied_records_held_back_total 8\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  // The next scrape without them (a sandbox ended, or a scrape that may not see ids).
  text = ops.RenderMetrics({}, {}, {});
  EXPECT_EQ(text.find("aaaaaaaaaaaaaaaaaaaa"), std::string::npos);
}

}  // namespace
}  // namespace isobox::server::ops

namespace isobox::server::ops {
namespace {

TEST(OpsTest, SecretRoutesAreTemplatesAndAudited) {
  EXPECT_EQ(ClassifyControl("GET", "/secrets?limit=2").route, "/secrets");
  EXPECT_EQ(ClassifyControl("GET", "/secrets?limit=2").action, "");
  EXPECT_EQ(ClassifyControl("POST", "/secrets").action, "secret.create");
  auto update = ClassifyControl("POST", "/secrets/my-key");
  EXPECT_EQ(update.route, "/secrets/{id}");  // never the name in a label
  EXPECT_EQ(update.action, "secret.update");
  EXPECT_EQ(update.sandbox_id, "");
  EXPECT_EQ(ClassifyControl("DELETE", "/secrets/sec_abc").action, "secret.destroy");
  EXPECT_EQ(ClassifyControl("GET", "/secrets/sec_abc").action, "");
  EXPECT_EQ(ClassifyControl("GET", "/secrets/a/b").route, "other");
}

// SECURITY: the value is in the request body; the record has the route's facts only.
TEST(OpsTest, SecretRecordsHaveIdNameAndVersionNeverTheValue) {
  char pattern[] = "/tmp/isobox-ops-test-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(pattern);
  auto log = AuditLog::Open(dir / "audit.log");
  ASSERT_TRUE(log);
  AuditLog& audit = **log;
  Ops ops(std::move(*log));
  Caller keyed{"key:0123456789ab", "127.0.0.1:2"};
  const std::string body = R"({"name":"k","value":"hunter2-TOP-SECRET","timeout":5})";
  json::object facts{{"secretID", "sec_x"}, {"name", "k"}, {"version", 1}};
  ops.OnControl({.caller = keyed,
                 .method = "POST",
                 .target = "/secrets",
                 .request_body = body,
                 .status = 201,
                 .response_body = R"({"secretID":"sec_x"})",
                 .details = &facts});
  ops.OnControl({.caller = keyed,
                 .method = "POST",
                 .target = "/secrets/k",
                 .request_body = body,
                 .status = 400});
  // An unknown secret is not audited (anyone can name one).
  ops.OnControl({.caller = keyed, .method = "DELETE", .target = "/secrets/made-up", .status = 404});
  audit.Flush();
  auto records = audit.Read({.limit = kMaxAuditLimit});
  ASSERT_TRUE(records);
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].at("action").as_string(), "secret.create");
  EXPECT_EQ((*records)[0].at("details"), json::value(facts));
  EXPECT_EQ((*records)[1].at("action").as_string(), "secret.update");
  EXPECT_EQ((*records)[1].at("status").to_number<int>(), 400);
  EXPECT_TRUE((*records)[1].at("details").as_object().empty());
  std::ifstream in(dir / "audit.log");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace isobox::server::ops
