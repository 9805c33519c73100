#include "server/store/store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-store-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Store> Open() {
    auto store = Store::Open(dir_ / "isobox.db");
    EXPECT_TRUE(store) << store.error().message;
    return store ? std::move(*store) : nullptr;
  }

  static SandboxRecord Record(const std::string& id) {
    SandboxRecord record;
    record.info.id = id;
    record.info.template_id = "base";
    record.info.access_token = "token-" + id;
    record.info.metadata = {{"k 1", "v&=1"}, {"empty", ""}};
    record.info.started_at = SystemTime(std::chrono::milliseconds(1700000000123));
    record.info.end_at = record.info.started_at + std::chrono::minutes(5);
    record.info.cpu_count = 2;
    record.info.memory_mb = 512;
    record.info.disk_mb = 1024;
    record.info.auto_pause = true;
    record.slot = 7;
    record.init_pid = 4242;
    record.init_start_ticks = 987654321;
    record.interpreter = true;
    return record;
  }

  fs::path dir_;
};

TEST_F(StoreTest, SandboxRecordsSurviveReopening) {
  {
    auto store = Open();
    ASSERT_TRUE(store->PutSandbox(Record("aaa")));
    ASSERT_TRUE(store->PutSandbox(Record("bbb")));
    SystemTime later = SystemTime(std::chrono::milliseconds(1700000999000));
    ASSERT_TRUE(store->UpdateSandbox("aaa", SandboxState::kPaused, later));
  }
  auto store = Open();
  auto live = store->LiveSandboxes();
  ASSERT_TRUE(live);
  ASSERT_EQ(live->size(), 2u);
  auto a = store->GetSandbox("aaa");
  ASSERT_TRUE(a && a->has_value());
  const SandboxRecord& record = **a;
  EXPECT_EQ(record.info.state, SandboxState::kPaused);
  EXPECT_EQ(record.info.end_at, SystemTime(std::chrono::milliseconds(1700000999000)));
  EXPECT_EQ(record.info.started_at, Record("aaa").info.started_at);
  EXPECT_EQ(record.info.metadata, Record("aaa").info.metadata);
  EXPECT_EQ(record.info.access_token, "token-aaa");
  EXPECT_TRUE(record.info.auto_pause);
  EXPECT_EQ(record.slot, 7u);
  EXPECT_EQ(record.init_pid, 4242);
  EXPECT_EQ(record.init_start_ticks, 987654321u);
  EXPECT_TRUE(record.interpreter);
  EXPECT_FALSE(record.end);
  // SECURITY: the database holds access tokens.
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "isobox.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);
}

TEST_F(StoreTest, EndedSandboxesKeepTheirReasonUntilPruned) {
  auto store = Open();
  ASSERT_TRUE(store->PutSandbox(Record("ccc")));
  SandboxEnd end{.at = SystemTime(std::chrono::milliseconds(1700000500000)),
                 .reason = "signaled",
                 .message = "its agent was killed by signal 9",
                 .signal = 9};
  ASSERT_TRUE(store->EndSandbox("ccc", end));
  // An ended sandbox is not live and cannot be moved back to running.
  ASSERT_TRUE(store->UpdateSandbox("ccc", SandboxState::kRunning, SystemTime{}));
  EXPECT_TRUE(store->LiveSandboxes()->empty());
  auto ended = store->GetSandbox("ccc");
  ASSERT_TRUE(ended && ended->has_value() && (*ended)->end);
  EXPECT_EQ((*ended)->end->reason, "signaled");
  EXPECT_EQ((*ended)->end->signal, 9);
  EXPECT_FALSE((*ended)->end->exit_code);
  EXPECT_EQ(*store->PruneEnded(end.at), 0);
  EXPECT_EQ(*store->PruneEnded(end.at + std::chrono::seconds(1)), 1);
  EXPECT_FALSE(store->GetSandbox("ccc")->has_value());
}

TEST_F(StoreTest, ApiKeysAreStoredAsDigestsAndCanBeRevoked) {
  auto store = Open();
  std::string digest = ApiKeyDigest("e2b_secret");
  EXPECT_EQ(digest.size(), 64u);
  ASSERT_TRUE(store->AddApiKey(digest, "ci"));
  ASSERT_TRUE(store->AddApiKey(digest, "again"));  // the same key twice: one record
  auto keys = store->ListApiKeys();
  ASSERT_TRUE(keys);
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].id, ApiKeyId(digest));
  EXPECT_EQ((*keys)[0].name, "ci");
  auto found = store->FindApiKey(digest);
  ASSERT_TRUE(found && found->has_value());
  EXPECT_EQ((*found)->id, ApiKeyId(digest));
  EXPECT_FALSE((*found)->admin);
  EXPECT_FALSE(store->FindApiKey(ApiKeyDigest("e2b_other"))->has_value());
  ASSERT_TRUE(store->RevokeApiKey(ApiKeyId(digest)));
  EXPECT_FALSE(store->FindApiKey(digest)->has_value());
  // Re-adding a revoked key (e.g. still listed in the api-keys file) does not revive it.
  ASSERT_TRUE(store->AddApiKey(digest, "file"));
  EXPECT_FALSE(store->FindApiKey(digest)->has_value());
  EXPECT_EQ(store->RevokeApiKey("nope").error().code, ErrorCode::kNotFound);
}

TEST_F(StoreTest, SandboxesKeepTheKeyThatCreatedThem) {
  auto store = Open();
  SandboxRecord mine = Record("aaa");
  mine.info.owner = "0123456789ab";
  ASSERT_TRUE(store->PutSandbox(mine));
  ASSERT_TRUE(store->PutSandbox(Record("bbb")));  // no owner
  SandboxRecord ended = Record("ccc");
  ended.info.owner = "0123456789ab";
  ASSERT_TRUE(store->PutSandbox(ended));
  ASSERT_TRUE(store->EndSandbox("ccc", {.at = SystemTime{}, .reason = "timeout", .message = ""}));
  EXPECT_EQ((*store->GetSandbox("aaa"))->info.owner, "0123456789ab");
  EXPECT_EQ((*store->GetSandbox("bbb"))->info.owner, "");
  EXPECT_EQ((*store->LiveSandboxes())[0].info.owner, "0123456789ab");
  // Ended ones too, until pruned: their audit records stay the key's.
  EXPECT_EQ(*store->SandboxesOwnedBy("0123456789ab"), (std::set<std::string>{"aaa", "ccc"}));
  EXPECT_TRUE(store->SandboxesOwnedBy("")->empty());
}

TEST_F(StoreTest, AdminKeysCanBePromotedAndDemoted) {
  auto store = Open();
  std::string admin = ApiKeyDigest("e2b_admin");
  std::string tenant = ApiKeyDigest("e2b_tenant");
  ASSERT_TRUE(store->AddApiKey(admin, "ops", /*admin=*/true));
  ASSERT_TRUE(store->AddApiKey(tenant, "team"));
  EXPECT_TRUE((*store->FindApiKey(admin))->admin);
  EXPECT_FALSE((*store->FindApiKey(tenant))->admin);
  // Adding an existing key again never changes what it is.
  ASSERT_TRUE(store->AddApiKey(tenant, "again", /*admin=*/true));
  EXPECT_FALSE((*store->FindApiKey(tenant))->admin);
  ASSERT_TRUE(store->SetApiKeyAdmin(ApiKeyId(tenant), true));
  EXPECT_TRUE((*store->FindApiKey(tenant))->admin);
  ASSERT_TRUE(store->SetApiKeyAdmin(ApiKeyId(admin), false));
  auto keys = store->ListApiKeys();
  ASSERT_TRUE(keys);
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_FALSE((*keys)[0].admin);
  EXPECT_TRUE((*keys)[1].admin);
  ASSERT_TRUE(store->RevokeApiKey(ApiKeyId(tenant)));
  EXPECT_EQ(store->SetApiKeyAdmin(ApiKeyId(tenant), true).error().code, ErrorCode::kNotFound);
}

// A state database as isoboxd made it before tenancy (schema version 1).
TEST_F(StoreTest, UpgradesAVersion1DatabaseWithoutOwners) {
  {
    auto db = sqlite::Database::Open(dir_ / "isobox.db");
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->Exec(R"sql(
CREATE TABLE sandboxes(
  id TEXT PRIMARY KEY, template_id TEXT NOT NULL, access_token TEXT NOT NULL,
  metadata TEXT NOT NULL, state TEXT NOT NULL, started_at INTEGER NOT NULL,
  end_at INTEGER NOT NULL, cpu_count INTEGER NOT NULL, memory_mb INTEGER NOT NULL,
  disk_mb INTEGER NOT NULL, auto_pause INTEGER NOT NULL, slot INTEGER NOT NULL,
  init_pid INTEGER NOT NULL, init_start_ticks INTEGER NOT NULL, interpreter INTEGER NOT NULL,
  ended_at INTEGER, end_reason TEXT, end_message TEXT, exit_code INTEGER, exit_signal INTEGER);
CREATE INDEX sandboxes_state ON sandboxes(state);
CREATE TABLE api_keys(id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
  created_at INTEGER NOT NULL, revoked_at INTEGER);
CREATE TABLE templates(id TEXT PRIMARY KEY, spec TEXT NOT NULL, updated_at INTEGER NOT NULL);
INSERT INTO sandboxes VALUES('old', 'base', 'tok', '{}', 'running', 1, 2, 1, 512, 1024, 0, 3,
  4242, 99, 0, NULL, NULL, NULL, NULL, NULL);
INSERT INTO api_keys VALUES('aaaaaaaaaaaa', 'da', 'first start', 1, NULL);
INSERT INTO api_keys VALUES('bbbbbbbbbbbb', 'db', 'from /var/lib/isobox/api-keys', 2, NULL);
INSERT INTO api_keys VALUES('cccccccccccc', 'dc', 'created with isoboxd api-key', 3, NULL);
PRAGMA user_version = 1;
)sql"));
  }
  for (int open = 0; open < 2; ++open) {  // the second open finds version 2: no change
    auto store = Open();
    ASSERT_TRUE(store);
    auto old = store->GetSandbox("old");
    ASSERT_TRUE(old && old->has_value());
    EXPECT_EQ((*old)->info.owner, "");  // admin keys only
    EXPECT_EQ((*old)->slot, 3u);
    EXPECT_EQ((*old)->info.address, 0u);
    EXPECT_FALSE((*old)->info.network.internet) << "made before networking: loopback only";
    auto keys = store->ListApiKeys();
    ASSERT_TRUE(keys);
    ASSERT_EQ(keys->size(), 3u);
    EXPECT_TRUE((*keys)[0].admin) << "the first start's key";
    EXPECT_TRUE((*keys)[1].admin) << "a key from <state>/api-keys";
    EXPECT_FALSE((*keys)[2].admin) << "a key made with isoboxd api-key create";
  }
  auto db = sqlite::Database::Open(dir_ / "isobox.db");
  auto version = db->Prepare("PRAGMA user_version");
  ASSERT_TRUE(version && *version->Step());
  EXPECT_EQ(version->Int(0), 8);
}

TEST_F(StoreTest, KeepsASandboxsAddressAndNetworkConfig) {
  auto store = Open();
  ASSERT_TRUE(store);
  SandboxRecord record;
  record.info.id = "net1";
  record.info.template_id = "base";
  record.info.address = 0x0acd0002;
  record.info.network.internet = false;
  record.info.network.deny_out.push_back(*net::ParseEgressEntry("198.51.100.0/24"));
  ASSERT_TRUE(store->PutSandbox(record));
  auto back = store->GetSandbox("net1");
  ASSERT_TRUE(back && back->has_value());
  EXPECT_EQ((*back)->info.address, 0x0acd0002u);
  EXPECT_EQ((*back)->info.network, record.info.network);
}

TEST_F(StoreTest, KeepsATrafficAccessTokenAndTheIngressOptions) {
  auto store = Open();
  ASSERT_TRUE(store);
  SandboxRecord closed = Record("closed");
  closed.info.traffic_access_token = "traffic-token";
  closed.info.network.allow_public_traffic = false;
  closed.info.network.mask_request_host = "example.test:${PORT}";
  closed.info.network.https_ports = {8443};
  ASSERT_TRUE(store->PutSandbox(closed));
  ASSERT_TRUE(store->PutSandbox(Record("open")));
  auto back = store->GetSandbox("closed");
  ASSERT_TRUE(back && back->has_value());
  EXPECT_EQ((*back)->info.traffic_access_token, "traffic-token");
  EXPECT_EQ((*back)->info.network, closed.info.network);
  auto open = store->GetSandbox("open");
  ASSERT_TRUE(open && open->has_value());
  EXPECT_EQ((*open)->info.traffic_access_token, "");
  EXPECT_TRUE((*open)->info.network.allow_public_traffic);
}

// The token decides: a sandbox that has one stays closed even when its stored network
// configuration cannot be read back.
TEST_F(StoreTest, ATrafficTokenKeepsTheSandboxClosedWhateverItsStoredConfig) {
  {
    auto store = Open();
    SandboxRecord record = Record("closed");
    record.info.traffic_access_token = "traffic-token";
    record.info.network.allow_public_traffic = false;
    ASSERT_TRUE(store->PutSandbox(record));
  }
  {
    auto db = sqlite::Database::Open(dir_ / "isobox.db");
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->Exec("UPDATE sandboxes SET network = 'not json' WHERE id = 'closed'"));
  }
  auto store = Open();
  auto back = store->GetSandbox("closed");
  ASSERT_TRUE(back && back->has_value());
  EXPECT_EQ((*back)->info.traffic_access_token, "traffic-token");
  EXPECT_FALSE((*back)->info.network.allow_public_traffic);
}

// A sandbox's lifecycle (E2B's onTimeout keepMemory and autoResume) is kept.
TEST_F(StoreTest, KeepsASandboxsLifecycle) {
  auto store = Open();
  SandboxRecord record = Record("lifecycle");
  record.info.auto_pause = true;
  record.info.auto_pause_memory = false;
  record.info.auto_resume = true;
  ASSERT_TRUE(store->PutSandbox(record));
  auto back = store->GetSandbox("lifecycle");
  ASSERT_TRUE(back && back->has_value());
  EXPECT_TRUE((*back)->info.auto_pause);
  EXPECT_FALSE((*back)->info.auto_pause_memory);
  EXPECT_TRUE((*back)->info.auto_resume);
  ASSERT_TRUE(store->PutSandbox(Record("plain")));
  auto plain = store->GetSandbox("plain");
  ASSERT_TRUE(plain && plain->has_value());
  EXPECT_TRUE((*plain)->info.auto_pause_memory);
  EXPECT_FALSE((*plain)->info.auto_resume);
}

// A database from before public traffic (schema version 3): its sandboxes have no token.
TEST_F(StoreTest, UpgradesAVersion3DatabaseWithPublicSandboxes) {
  {
    auto store = Open();
    ASSERT_TRUE(store->PutSandbox(Record("old")));
  }
  {
    auto db = sqlite::Database::Open(dir_ / "isobox.db");
    ASSERT_TRUE(db);
    ASSERT_TRUE(
        db->Exec("ALTER TABLE sandboxes DROP COLUMN traffic_access_token; "
                 "ALTER TABLE sandboxes DROP COLUMN template_build; "
                 "ALTER TABLE sandboxes DROP COLUMN auto_pause_memory; "
                 "ALTER TABLE sandboxes DROP COLUMN auto_resume; "
                 "DROP TABLE user_templates; DROP TABLE template_names; "
                 "DROP TABLE template_builds; DROP TABLE template_tags; "
                 "PRAGMA user_version = 3;"));
  }
  auto store = Open();
  ASSERT_TRUE(store);
  auto old = store->GetSandbox("old");
  ASSERT_TRUE(old && old->has_value());
  EXPECT_EQ((*old)->info.traffic_access_token, "");
  EXPECT_TRUE((*old)->info.network.allow_public_traffic);
  auto db = sqlite::Database::Open(dir_ / "isobox.db");
  auto version = db->Prepare("PRAGMA user_version");
  ASSERT_TRUE(version && *version->Step());
  EXPECT_EQ(version->Int(0), 8);
}

TEST_F(StoreTest, RefusesADatabaseFromANewerSchema) {
  { auto store = Open(); }
  auto db = sqlite::Database::Open(dir_ / "isobox.db");
  ASSERT_TRUE(db);
  ASSERT_TRUE(db->Exec("PRAGMA user_version = 99"));
  auto store = Store::Open(dir_ / "isobox.db");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("schema version 99"), std::string::npos);
}

}  // namespace
}  // namespace isobox::server
