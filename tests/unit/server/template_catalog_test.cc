// The template catalog over a real store: names, tenancy, builds, tags, what a
// reference resolves to, and which builds' layers the collector must keep.
#include "server/control/template_catalog.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

const Tenant kAlice{.key_id = "aaaaaaaaaaaa", .admin = false};
const Tenant kBob{.key_id = "bbbbbbbbbbbb", .admin = false};
const Tenant kAdmin{.key_id = "cccccccccccc", .admin = true};

class TemplateCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-catalog-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    auto store = Store::Open(dir_ / "isobox.db");
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    catalog_ = std::make_unique<TemplateCatalog>(*store_, builtins_, dir_ / "layers");
  }
  void TearDown() override {
    catalog_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  protocol::TemplateRequest Request(std::string_view name) {
    auto parsed = protocol::ParseTemplateRequest(boost::json::value{{"name", std::string(name)}});
    EXPECT_TRUE(parsed) << parsed.error().message;
    return *parsed;
  }

  // Requests a build of `name` and finishes it as `status` with `result`.
  BuildRecord Build(const Tenant& tenant, std::string_view name, BuildStatus status,
                    BuildResult result = {}) {
    auto requested = catalog_->RequestBuild(tenant, Request(name));
    EXPECT_TRUE(requested) << requested.error().message;
    BuildRecord build = requested->build;
    EXPECT_TRUE(store_->StartBuild(build.id, "{}", std::chrono::system_clock::now()));
    build.status = status;
    build.result = BuildResultJson(result);
    build.finished_at = std::chrono::system_clock::now();
    EXPECT_TRUE(store_->FinishBuild(build));
    return build;
  }

  fs::path dir_;
  TemplateStore builtins_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<TemplateCatalog> catalog_;
};

TEST_F(TemplateCatalogTest, ABuildMovesItsTagsOnlyWhenReady) {
  BuildRecord first = Build(kAlice, "app", BuildStatus::kReady, {.env = {{"V", "1"}}});
  auto ref = protocol::ParseTemplateRef("app");
  ASSERT_TRUE(ref);
  auto resolved = catalog_->ResolveBuild(kAlice, *ref);
  ASSERT_TRUE(resolved) << resolved.error().message;
  EXPECT_EQ(resolved->id, first.id);
  // A failed rebuild leaves the name where it was.
  Build(kAlice, "app", BuildStatus::kError);
  resolved = catalog_->ResolveBuild(kAlice, *ref);
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->id, first.id);
  BuildRecord third = Build(kAlice, "app", BuildStatus::kReady);
  resolved = catalog_->ResolveBuild(kAlice, *ref);
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->id, third.id);
}

// Resolve keeps its store lookups per name until a template, build or tag changes; a
// key's right to see the template is checked at every lookup.
TEST_F(TemplateCatalogTest, ResolveFollowsEveryChangeAndEveryKey) {
  BuildResult result{.base = std::string(kImageBase), .env = {{"V", "1"}}};
  BuildRecord first = Build(kAlice, "cached", BuildStatus::kReady, result);
  auto resolved = catalog_->Resolve(kAlice, "cached");
  ASSERT_TRUE(resolved) << resolved.error().message;
  EXPECT_EQ((*resolved)->build_id, first.id);
  EXPECT_EQ((*resolved)->env.at("V"), "1");
  auto again = catalog_->Resolve(kAlice, "cached");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->get(), resolved->get()) << "the second lookup is the kept one";
  // Another key: hidden, though the lookup is kept.
  auto hidden = catalog_->Resolve(kBob, "cached");
  ASSERT_FALSE(hidden);
  EXPECT_EQ(hidden.error().code, ErrorCode::kNotFound);
  // A new ready build: the next lookup finds it.
  result.env["V"] = "2";
  BuildRecord second = Build(kAlice, "cached", BuildStatus::kReady, result);
  resolved = catalog_->Resolve(kAlice, "cached");
  ASSERT_TRUE(resolved);
  EXPECT_EQ((*resolved)->build_id, second.id);
  EXPECT_EQ((*resolved)->env.at("V"), "2");
  // Made public: another key may use it now.
  ASSERT_TRUE(catalog_->SetPublic(kAlice, "cached", true));
  EXPECT_TRUE(catalog_->Resolve(kBob, "cached"));
  // Deleted: gone for every key.
  ASSERT_TRUE(catalog_->Delete(kAlice, "cached"));
  auto gone = catalog_->Resolve(kAlice, "cached");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
}

TEST_F(TemplateCatalogTest, AFirstBuildThatFailedLeavesNoUsableTemplate) {
  Build(kAlice, "broken", BuildStatus::kError);
  auto ref = protocol::ParseTemplateRef("broken");
  ASSERT_TRUE(ref);
  auto resolved = catalog_->ResolveBuild(kAlice, *ref);
  ASSERT_FALSE(resolved);
  EXPECT_EQ(resolved.error().code, ErrorCode::kNotFound);
  EXPECT_NE(resolved.error().message.find("no ready build"), std::string::npos);
}

TEST_F(TemplateCatalogTest, AnotherKeysTemplateIsHiddenAndItsNameTaken) {
  Build(kAlice, "private", BuildStatus::kReady);
  auto hidden = catalog_->Find(kBob, "private");
  ASSERT_FALSE(hidden);
  EXPECT_EQ(hidden.error().code, ErrorCode::kNotFound);
  auto forbidden = catalog_->Find(kBob, "private", false, Hidden::kForbidden);
  ASSERT_FALSE(forbidden);
  EXPECT_EQ(forbidden.error().code, ErrorCode::kPermissionDenied);
  auto taken = catalog_->RequestBuild(kBob, Request("private"));
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code, ErrorCode::kAlreadyExists);
  auto deleted = catalog_->Delete(kBob, "private");
  ASSERT_FALSE(deleted);
  EXPECT_EQ(deleted.error().code, ErrorCode::kNotFound);
  // Public: usable by every key, changed by its owner only.
  ASSERT_TRUE(catalog_->SetPublic(kAlice, "private", true));
  EXPECT_TRUE(catalog_->Find(kBob, "private"));
  auto change = catalog_->Find(kBob, "private", /*change=*/true);
  ASSERT_FALSE(change);
  EXPECT_EQ(change.error().code, ErrorCode::kPermissionDenied);
  EXPECT_TRUE(catalog_->Find(kAdmin, "private", /*change=*/true));
}

TEST_F(TemplateCatalogTest, TagsPointAtBuildsAndComeOff) {
  BuildRecord v1 = Build(kAlice, "tagged", BuildStatus::kReady);
  auto assignment = protocol::ParseTagAssignment(
      boost::json::value{{"target", "tagged"}, {"tags", boost::json::array{"stable", "prod"}}});
  ASSERT_TRUE(assignment);
  auto assigned = catalog_->AssignTags(kAlice, *assignment);
  ASSERT_TRUE(assigned) << assigned.error().message;
  EXPECT_EQ(*assigned, v1.id);
  auto tags = catalog_->Tags(kAlice, "tagged");
  ASSERT_TRUE(tags);
  ASSERT_EQ(tags->size(), 3u);  // default, prod, stable
  auto removal = protocol::ParseTagRemoval(
      boost::json::value{{"name", "tagged"}, {"tags", boost::json::array{"prod", "nope"}}});
  ASSERT_TRUE(removal);
  auto removed = catalog_->RemoveTags(kAlice, *removal);
  ASSERT_FALSE(removed);  // all or nothing: "nope" does not exist
  EXPECT_EQ(removed.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(catalog_->Tags(kAlice, "tagged")->size(), 3u);
}

TEST_F(TemplateCatalogTest, TheCollectorKeepsTaggedNewestAndRunningBuildsOnly) {
  Build(kAlice, "gc", BuildStatus::kReady, {.layers = {"l1"}, .steps = {"l1"}});
  BuildRecord second =
      Build(kAlice, "gc", BuildStatus::kReady, {.layers = {"l2"}, .steps = {"l2"}});
  Build(kAlice, "gc", BuildStatus::kError, {.steps = {"l3"}});
  auto live = store_->LiveBuildResults();
  ASSERT_TRUE(live) << live.error().message;
  std::string all;
  for (const std::string& result : *live) all += result;
  EXPECT_EQ(all.find("\"l1\""), std::string::npos) << all;  // replaced, untagged
  EXPECT_NE(all.find("\"l2\""), std::string::npos) << all;  // tagged
  EXPECT_NE(all.find("\"l3\""), std::string::npos) << all;  // newest: a retry's cache
  // A deleted template's builds go, but one a live sandbox runs.
  auto record = catalog_->Find(kAlice, "gc");
  ASSERT_TRUE(record);
  SandboxRecord sandbox;
  sandbox.info.id = "sbx";
  sandbox.info.template_id = record->id;
  sandbox.info.build_id = second.id;
  ASSERT_TRUE(store_->PutSandbox(sandbox));
  ASSERT_TRUE(catalog_->Delete(kAlice, "gc"));
  live = store_->LiveBuildResults();
  ASSERT_TRUE(live);
  all.clear();
  for (const std::string& result : *live) all += result;
  EXPECT_NE(all.find("\"l2\""), std::string::npos) << all;
  EXPECT_EQ(all.find("\"l3\""), std::string::npos) << all;
  ASSERT_TRUE(store_->EndSandbox("sbx", SandboxEnd{.at = std::chrono::system_clock::now(),
                                                   .reason = "killed_by_user",
                                                   .message = "killed"}));
  live = store_->LiveBuildResults();
  ASSERT_TRUE(live);
  EXPECT_TRUE(live->empty());
}

// The warm pools of user templates listen to this (Registry::TemplateChanged): every
// change that moves what a name means is told, a refused one is not.
TEST_F(TemplateCatalogTest, TagChangesAndDeletesTellTheChangeObserver) {
  std::vector<std::string> told;
  catalog_->SetChangeObserver([&](const std::string& id) { told.push_back(id); });
  Build(kAlice, "watched", BuildStatus::kReady);
  auto record = catalog_->Find(kAlice, "watched");
  ASSERT_TRUE(record);
  EXPECT_TRUE(told.empty()) << "a build is told by the builder, not the catalog";
  auto assignment = protocol::ParseTagAssignment(
      boost::json::value{{"target", "watched"}, {"tags", boost::json::array{"stable"}}});
  ASSERT_TRUE(assignment);
  EXPECT_FALSE(catalog_->AssignTags(kBob, *assignment));  // not Bob's: refused, not told
  EXPECT_TRUE(told.empty());
  ASSERT_TRUE(catalog_->AssignTags(kAlice, *assignment));
  EXPECT_EQ(told, std::vector<std::string>{record->id});
  auto removal = protocol::ParseTagRemoval(
      boost::json::value{{"name", "watched"}, {"tags", boost::json::array{"stable"}}});
  ASSERT_TRUE(removal);
  ASSERT_TRUE(catalog_->RemoveTags(kAlice, *removal));
  EXPECT_EQ(told.size(), 2u);
  EXPECT_FALSE(catalog_->Delete(kBob, "watched"));
  EXPECT_EQ(told.size(), 2u);
  ASSERT_TRUE(catalog_->Delete(kAlice, "watched"));
  EXPECT_EQ(told, (std::vector<std::string>{record->id, record->id, record->id}));
}

}  // namespace
}  // namespace isobox::server
