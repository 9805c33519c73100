#include "server/control/secrets.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "server/routes/secrets.h"
#include "server/store/sqlite.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

const Tenant kAlice{.key_id = "aaaaaaaaaaaa", .admin = false};
const Tenant kBob{.key_id = "bbbbbbbbbbbb", .admin = false};
const Tenant kAdmin{.key_id = "000000000000", .admin = true};
const std::string kValue = "sk-TOP-SECRET-value-1";

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-secrets-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    Reopen();
  }
  void TearDown() override {
    secrets_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  void Reopen() {
    secrets_.reset();
    store_.reset();
    auto store = Store::Open(dir_ / "isobox.db");
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    secrets_ = std::make_unique<SecretStore>(*store_);
  }

  // The error message of a failed result, or "" (and a test failure) if it succeeded.
  template <typename T>
  static std::string ErrorOf(const Result<T>& result, ErrorCode code) {
    EXPECT_FALSE(result);
    if (result) return "";
    EXPECT_EQ(result.error().code, code) << result.error().message;
    EXPECT_EQ(result.error().message.find(kValue), std::string::npos);
    return result.error().message;
  }

  fs::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<SecretStore> secrets_;
};

TEST_F(SecretsTest, CreateGetUpdateAndDestroy) {
  auto created = secrets_->Create("OpenAI-Key", kValue, {{"team", "ml"}}, kAlice);
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(created->name, "openai-key");  // lower-cased before storage
  EXPECT_TRUE(created->id.starts_with("sec_"));
  EXPECT_EQ(created->id.size(), 24u);
  EXPECT_EQ(created->version, 1);
  EXPECT_EQ(created->owner, kAlice.key_id);
  EXPECT_EQ(created->created_at, created->updated_at);

  // By id, by name, by a name in another case.
  for (std::string key : {created->id, std::string("openai-key"), std::string("OPENAI-KEY")}) {
    auto got = secrets_->Get(key, kAlice);
    ASSERT_TRUE(got) << key << ": " << got.error().message;
    EXPECT_EQ(got->id, created->id);
    EXPECT_EQ(got->metadata, (std::map<std::string, std::string>{{"team", "ml"}}));
  }
  auto value = secrets_->Resolve("openai-key");
  ASSERT_TRUE(value) << value.error().message;
  EXPECT_EQ(*value, kValue);

  // An update is a new version; metadata is kept unless given.
  auto updated = secrets_->Update("openai-key", "second value", std::nullopt, kAlice);
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_EQ(updated->version, 2);
  EXPECT_EQ(updated->metadata, created->metadata);
  EXPECT_EQ(updated->created_at, created->created_at);
  EXPECT_GE(updated->updated_at, created->updated_at);
  EXPECT_EQ(*secrets_->Resolve("OpenAI-Key"), "second value");
  updated = secrets_->Update(created->id, "third value",
                             std::map<std::string, std::string>{{"owner", "bob"}}, kAlice);
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->version, 3);
  EXPECT_EQ(updated->metadata, (std::map<std::string, std::string>{{"owner", "bob"}}));
  EXPECT_EQ(secrets_->Get(created->id, kAlice)->version, 3);

  auto destroyed = secrets_->Destroy("openai-key", kAlice);
  ASSERT_TRUE(destroyed) << destroyed.error().message;
  EXPECT_EQ(destroyed->id, created->id);
  EXPECT_EQ(ErrorOf(secrets_->Get(created->id, kAlice), ErrorCode::kNotFound),
            fmt::format("secret '{}' not found", created->id));
  ErrorOf(secrets_->Destroy(created->id, kAlice), ErrorCode::kNotFound);
  EXPECT_EQ(ErrorOf(secrets_->Resolve("openai-key"), ErrorCode::kNotFound),
            "secret 'openai-key' not found");
}

TEST_F(SecretsTest, NamesAreUniqueValidatedAndTheIdPrefixIsReserved) {
  ASSERT_TRUE(secrets_->Create("db_password.v1", kValue, {}, kAlice));
  EXPECT_EQ(
      ErrorOf(secrets_->Create("DB_PASSWORD.v1", kValue, {}, kAlice), ErrorCode::kAlreadyExists),
      "a secret named 'db_password.v1' already exists");
  // Names are unique across keys too.
  ErrorOf(secrets_->Create("db_password.v1", kValue, {}, kBob), ErrorCode::kAlreadyExists);

  EXPECT_EQ(ErrorOf(secrets_->Create("", kValue, {}, kAlice), ErrorCode::kInvalidArgument),
            "'name' must not be empty");
  EXPECT_NE(ErrorOf(secrets_->Create("sec_mine", kValue, {}, kAlice), ErrorCode::kInvalidArgument)
                .find("reserved for secret ids"),
            std::string::npos);
  ErrorOf(secrets_->Create("SEC_mine", kValue, {}, kAlice), ErrorCode::kInvalidArgument);
  for (std::string bad : {"has space", "-leading", "_leading", "a{b}", "a/b", "caf\xc3\xa9"}) {
    std::string message =
        ErrorOf(secrets_->Create(bad, kValue, {}, kAlice), ErrorCode::kInvalidArgument);
    EXPECT_NE(message.find("is not a valid secret name"), std::string::npos) << bad;
  }
  ASSERT_TRUE(secrets_->Create(std::string(128, 'n'), kValue, {}, kAlice));
  EXPECT_EQ(ErrorOf(secrets_->Create(std::string(129, 'n'), kValue, {}, kAlice),
                    ErrorCode::kInvalidArgument),
            "'name' is longer than 128 bytes");
}

TEST_F(SecretsTest, ValuesAreBoundedAndHeaderSafe) {
  EXPECT_EQ(ErrorOf(secrets_->Create("v", "", {}, kAlice), ErrorCode::kInvalidArgument),
            "'value' must not be empty");
  ASSERT_TRUE(secrets_->Create("max", std::string(16384, 'x'), {}, kAlice));
  EXPECT_EQ(ErrorOf(secrets_->Create("v", std::string(16385, 'x'), {}, kAlice),
                    ErrorCode::kInvalidArgument),
            "'value' is 16385 bytes, longer than 16384 bytes");
  ASSERT_TRUE(secrets_->Create("tab", "Bearer\tx", {}, kAlice));
  for (std::string bad : {kValue + "\r\nX-Injected: 1", kValue + "\n", std::string("a\0b", 3),
                          kValue + "\x7f", kValue + "\x1b"}) {
    std::string message =
        ErrorOf(secrets_->Create("v", bad, {}, kAlice), ErrorCode::kInvalidArgument);
    EXPECT_NE(message.find("must not contain NUL, CR, LF or other control characters"),
              std::string::npos);
  }
  // An update checks the same, and a refused update changes nothing.
  ErrorOf(secrets_->Update("tab", "a\nb", std::nullopt, kAlice), ErrorCode::kInvalidArgument);
  EXPECT_EQ(secrets_->Get("tab", kAlice)->version, 1);
  EXPECT_EQ(*secrets_->Resolve("tab"), "Bearer\tx");
}

TEST_F(SecretsTest, MetadataLimitsFromTheSchema) {
  std::map<std::string, std::string> metadata;
  for (int i = 0; i < 32; ++i) metadata[fmt::format("k{:02}", i)] = "v";
  ASSERT_TRUE(secrets_->Create("m32", kValue, metadata, kAlice));
  metadata["k32"] = "v";
  EXPECT_EQ(ErrorOf(secrets_->Create("m33", kValue, metadata, kAlice), ErrorCode::kInvalidArgument),
            "'metadata' has 33 entries, more than 32");
  ASSERT_TRUE(secrets_->Create("k128", kValue, {{std::string(128, 'k'), "v"}}, kAlice));
  EXPECT_NE(ErrorOf(secrets_->Create("k129", kValue, {{std::string(129, 'k'), "v"}}, kAlice),
                    ErrorCode::kInvalidArgument)
                .find("is 129 bytes, longer than 128 bytes"),
            std::string::npos);
  ASSERT_TRUE(secrets_->Create("v1024", kValue, {{"k", std::string(1024, 'v')}}, kAlice));
  EXPECT_EQ(ErrorOf(secrets_->Create("v1025", kValue, {{"k", std::string(1025, 'v')}}, kAlice),
                    ErrorCode::kInvalidArgument),
            "'metadata.k' is 1025 bytes, longer than 1024 bytes");
  // 8 entries of 1 + 1023 bytes: 8192 in total; one byte more is refused.
  std::map<std::string, std::string> big;
  for (char c = 'a'; c < 'a' + 8; ++c) big[std::string(1, c)] = std::string(1023, 'v');
  ASSERT_TRUE(secrets_->Create("total8192", kValue, big, kAlice));
  big["i"] = "";
  EXPECT_EQ(
      ErrorOf(secrets_->Create("total8193", kValue, big, kAlice), ErrorCode::kInvalidArgument),
      "'metadata' is 8193 bytes in total (keys and values), more than 8192 bytes");
  // An update with metadata over the limits is refused whole.
  ErrorOf(secrets_->Update("m32", "new", big, kAlice), ErrorCode::kInvalidArgument);
  EXPECT_EQ(secrets_->Get("m32", kAlice)->version, 1);
}

TEST_F(SecretsTest, ListPagesByNameStableAcrossInserts) {
  for (std::string name : {"e", "b", "d", "a", "c"}) {
    ASSERT_TRUE(secrets_->Create(name, kValue, {}, kAlice));
  }
  ASSERT_TRUE(secrets_->Create("bobs", kValue, {}, kBob));
  std::vector<std::string> seen;
  std::optional<std::string> token;
  int pages = 0;
  do {
    auto page = secrets_->List(kAlice, 2, token);
    ASSERT_TRUE(page) << page.error().message;
    for (const SecretRecord& record : page->items) seen.push_back(record.name);
    token = page->next_token;
    if (pages++ == 0) {
      ASSERT_TRUE(secrets_->Create("aa", kValue, {}, kAlice));  // behind the token
    }
  } while (token);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  // An exact multiple of the limit: no token after the last page.
  auto all = secrets_->List(kAlice, 6, std::nullopt);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->items.size(), 6u);
  EXPECT_FALSE(all->next_token);
  auto admin = secrets_->List(kAdmin, 100, std::nullopt);
  ASSERT_TRUE(admin);
  EXPECT_EQ(admin->items.size(), 7u);
  EXPECT_EQ(ErrorOf(secrets_->List(kAlice, 2, "not a token!"), ErrorCode::kInvalidArgument),
            "'nextToken' is not a list token");
}

// SECURITY: a key's secrets are another key's missing secrets.
TEST_F(SecretsTest, AKeySeesOnlyItsOwnSecrets) {
  auto mine = secrets_->Create("alices", kValue, {}, kAlice);
  ASSERT_TRUE(mine);
  for (std::string key : {mine->id, std::string("alices")}) {
    EXPECT_EQ(ErrorOf(secrets_->Get(key, kBob), ErrorCode::kNotFound),
              fmt::format("secret '{}' not found", key));
    ErrorOf(secrets_->Update(key, "stolen", std::nullopt, kBob), ErrorCode::kNotFound);
    ErrorOf(secrets_->Destroy(key, kBob), ErrorCode::kNotFound);
  }
  EXPECT_TRUE(secrets_->List(kBob, 10, std::nullopt)->items.empty());
  EXPECT_EQ(*secrets_->Resolve("alices"), kValue);
  EXPECT_EQ(*secrets_->ResolveFor("alices", kAlice.key_id), kValue);
  EXPECT_EQ(ErrorOf(secrets_->ResolveFor("alices", kBob.key_id), ErrorCode::kNotFound),
            "secret 'alices' not found");
  EXPECT_EQ(secrets_->Get("alices", kAdmin)->version, 1);  // an admin key sees every secret
  auto updated = secrets_->Update("alices", "rotated", std::nullopt, kAdmin);
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->owner, kAlice.key_id);
}

TEST_F(SecretsTest, ResolveNamesTheSecretAndTakesNamesOnly) {
  auto created = secrets_->Create("token", kValue, {}, kAlice);
  ASSERT_TRUE(created);
  EXPECT_EQ(*secrets_->Resolve("TOKEN"), kValue);
  EXPECT_EQ(ErrorOf(secrets_->Resolve(created->id), ErrorCode::kNotFound),
            fmt::format("secret '{}' not found", created->id));
  EXPECT_EQ(ErrorOf(secrets_->Resolve("missing"), ErrorCode::kNotFound),
            "secret 'missing' not found");
  // A name from a sandbox's header is quoted printable and short.
  std::string hostile = "x\r\n" + std::string(300, 'y');
  std::string message = ErrorOf(secrets_->Resolve(hostile), ErrorCode::kNotFound);
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_LT(message.size(), 200u);
}

TEST_F(SecretsTest, SecretsSurviveReopeningInAFileOnlyRootReads) {
  auto created = secrets_->Create("persist", kValue, {{"a", "b"}}, kAlice);
  ASSERT_TRUE(created);
  ASSERT_TRUE(secrets_->Update("persist", "v2", std::nullopt, kAlice));
  Reopen();
  auto got = secrets_->Get("persist", kAlice);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->id, created->id);
  EXPECT_EQ(got->version, 2);
  EXPECT_EQ(got->metadata, created->metadata);
  EXPECT_EQ(got->created_at, created->created_at);
  EXPECT_EQ(*secrets_->Resolve("persist"), "v2");
  for (const char* suffix : {"", "-wal", "-shm"}) {
    fs::path file = dir_ / (std::string("isobox.db") + suffix);
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
}

// A database file (and its WAL) that an older isoboxd or a restored copy left readable by
// others is made 0600 when opened, before anything secret is written to it.
TEST_F(SecretsTest, AReadableDatabaseIsMadePrivateOnOpen) {
  ASSERT_TRUE(secrets_->Create("before", kValue, {}, kAlice));
  secrets_.reset();
  store_.reset();
  fs::path db = dir_ / "isobox.db";
  ASSERT_EQ(::chmod(db.c_str(), 0644), 0);
  for (const char* suffix : {"-wal", "-shm"}) {
    std::ofstream(db.string() + suffix, std::ios::app).flush();
    ASSERT_EQ(::chmod((db.string() + suffix).c_str(), 0644), 0);
  }
  Reopen();
  ASSERT_TRUE(secrets_->Create("after", kValue, {}, kAlice));
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st {};
    ASSERT_EQ(::stat((db.string() + suffix).c_str(), &st), 0) << suffix;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << suffix;
  }
}

// SECURITY: a destroyed secret's value is not left in the file's free pages.
TEST_F(SecretsTest, ADestroyedValueIsGoneFromTheFile) {
  const std::string marker = "MARKER-" + std::string(200, 'q') + "-END";
  ASSERT_TRUE(secrets_->Create("gone", marker, {}, kAlice));
  ASSERT_TRUE(secrets_->Destroy("gone", kAlice));
  Reopen();  // the last connection closing checkpoints the WAL into the file
  secrets_.reset();
  store_.reset();
  for (const char* suffix : {"", "-wal"}) {
    std::ifstream in(dir_ / (std::string("isobox.db") + suffix), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(marker), std::string::npos) << suffix;
  }
  Reopen();
}

TEST_F(SecretsTest, ConcurrentUpdatesEachGetTheirOwnVersion) {
  ASSERT_TRUE(secrets_->Create("counter", kValue, {}, kAlice));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        EXPECT_TRUE(secrets_->Update("counter", "v", std::nullopt, kAlice));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(secrets_->Get("counter", kAlice)->version, 41);
}

// An old database (schema version 4) gains the secrets table and keeps its sandboxes.
TEST_F(SecretsTest, UpgradesAVersion4Database) {
  secrets_.reset();
  store_.reset();
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  {
    auto db = sqlite::Database::Open(dir_ / "isobox.db");
    ASSERT_TRUE(db);
    ASSERT_TRUE(
        db->Exec("CREATE TABLE templates(id TEXT PRIMARY KEY, spec TEXT NOT NULL, "
                 "updated_at INTEGER NOT NULL); CREATE TABLE sandboxes(id TEXT PRIMARY KEY); "
                 "PRAGMA user_version = 4;"));
  }
  Reopen();
  ASSERT_TRUE(secrets_->Create("new", kValue, {}, kAlice));
  auto db = sqlite::Database::Open(dir_ / "isobox.db");
  ASSERT_TRUE(db);
  auto version = db->Prepare("PRAGMA user_version");
  ASSERT_TRUE(version && *version->Step());
  EXPECT_EQ(version->Int(0), 8);
}

TEST(SecretBodiesTest, ParseTheShapeAndNameTheField) {
  auto created = ParseNewSecret(R"({"name":"a","value":"b","metadata":{"k":"v"}})");
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(created->name, "a");
  EXPECT_EQ(created->value, "b");
  EXPECT_EQ(created->metadata, (std::map<std::string, std::string>{{"k", "v"}}));
  EXPECT_TRUE(ParseNewSecret(R"({"name":"a","value":"b","metadata":null})"));
  EXPECT_EQ(ParseNewSecret(R"({"value":"b"})").error().message, "'name' must be a string");
  EXPECT_EQ(ParseNewSecret(R"({"name":"a","value":5})").error().message,
            "'value' must be a string");
  EXPECT_EQ(ParseNewSecret(R"({"name":"a","value":"b","metadata":[]})").error().message,
            "'metadata' must be an object of strings");
  EXPECT_EQ(ParseNewSecret(R"({"name":"a","value":"b","metadata":{"k":1}})").error().message,
            "'metadata' values must be strings");
  EXPECT_EQ(ParseNewSecret("[]").error().message, "the body must be a JSON object");
  EXPECT_EQ(ParseNewSecret("").error().code, ErrorCode::kInvalidArgument);

  auto update = ParseSecretUpdate(R"({"value":"b"})");
  ASSERT_TRUE(update);
  EXPECT_FALSE(update->metadata);  // absent: kept
  update = ParseSecretUpdate(R"({"value":"b","metadata":{}})");
  ASSERT_TRUE(update && update->metadata);
  EXPECT_TRUE(update->metadata->empty());  // given empty: cleared
  EXPECT_EQ(ParseSecretUpdate(R"({"metadata":{}})").error().message, "'value' must be a string");
}

}  // namespace
}  // namespace isobox::server
