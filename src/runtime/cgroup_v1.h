// Cgroup over the legacy hierarchies (cgroup v1): the same relative directory in each of
// the memory, pids, cpu, cpuacct (if mounted) and freezer hierarchies, or for a child
// group in those it asked for (CgroupChildControllers).
#pragma once

#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "runtime/cgroup.h"

namespace isobox::runtime {

class CgroupV1 final : public Cgroup {
 public:
  // `roots`: controller -> hierarchy root (as given to CgroupManager::ForV1);
  // `relative`: the group below each root; `fake`: the roots are a fake tree (tests);
  // `fresh`: the group was just made by the kernel (not on a fake tree): its limits are
  // the kernel's defaults.
  CgroupV1(const std::map<std::string, std::filesystem::path>& roots,
           std::filesystem::path relative, bool fake, bool fresh = false);

  std::string RelativePath() const override { return relative_.string(); }
  Status SetLimits(const CgroupLimits& limits) override;
  Status AddProcess(pid_t pid) override;
  Result<UniqueFd> OpenDirFd() override;
  Result<std::vector<UniqueFd>> OpenProcsFiles() override;
  Result<UniqueFd> OpenEventFile(CgroupEventFile which) override;
  Result<UniqueFd> OpenCounterFile(CgroupCounter which) override;
  Result<std::unique_ptr<Cgroup>> CreateChild(std::string_view name,
                                              const CgroupChildControllers& own) override;
  Status Freeze() override;
  std::filesystem::path FreezerDir() const override { return Dir("freezer"); }
  Status Thaw() override;
  Status KillAll() override;
  Status Destroy(std::chrono::milliseconds timeout) override;
  Result<CgroupStats> Stats() override;
  Result<uint64_t> OomKills() override;
  std::vector<pid_t> Pids() override;

  // Each distinct group directory once (cpu and cpuacct may share a hierarchy).
  const std::vector<std::filesystem::path>& Dirs() const { return dirs_; }

 private:
  struct ChildTag {};
  // `member_dirs`: for each controller, the group its processes are in: its own directory,
  // or (a child) its parent's where it has none of its own; `own`: its own directories.
  CgroupV1(ChildTag, std::map<std::string, std::filesystem::path> member_dirs,
           std::vector<std::filesystem::path> own, std::filesystem::path relative, bool fake,
           bool fresh);

  // This group's own directory in the controller's hierarchy; empty where it has none (a
  // child's processes are in its parent's group there).
  std::filesystem::path Dir(const std::string& controller) const;
  // The group its processes are in, in the controller's hierarchy; empty if not mounted.
  std::filesystem::path MemberDir(const std::string& controller) const;
  // The error for a limit or file asked of a hierarchy this group has no group in.
  Unexpected NotOwn(std::string_view controller) const;
  Status SetMemoryLimit(uint64_t bytes);
  Status SetCpuLimits(const CgroupLimits& limits);

  std::map<std::string, std::filesystem::path> member_dirs_;
  std::filesystem::path relative_;
  std::vector<std::filesystem::path> dirs_;  // its own, each once
  bool fake_;
  // Until the first SetLimits: every limit is the kernel's default, which need not be
  // written again (a create writes only what differs).
  bool fresh_;
  // The directories made below this one by CreateChild, and those of them in the memory
  // hierarchy: Destroy and OomKills visit them without listing directories.
  std::vector<std::filesystem::path> child_dirs_;
  std::vector<std::filesystem::path> child_memory_dirs_;
};

class CgroupManagerV1 final : public CgroupManager {
 public:
  CgroupManagerV1(std::map<std::string, std::filesystem::path> roots, std::string parent);

  int Version() const override { return 1; }
  Result<std::unique_ptr<Cgroup>> Create(std::string_view name,
                                         const CgroupLimits& limits) override;
  Result<std::unique_ptr<Cgroup>> Open(std::string_view name) override;
  std::vector<std::string> List() override;

 private:
  // Creates the parent group(s) in every hierarchy, once (again after a create found
  // them gone).
  Status PrepareParent();
  // Each distinct hierarchy root once.
  std::vector<std::filesystem::path> UniqueRoots() const;

  std::map<std::string, std::filesystem::path> roots_;
  std::filesystem::path parent_;
  bool fake_;
  std::atomic<bool> parent_ready_{false};
};

// mkdir of a group in every hierarchy given, with memory.use_hierarchy=1 in
// `memory_dir` (the one in the memory hierarchy); unless `exist_ok`, removes what it made
// if a later step fails.
Status MakeGroupDirsV1(const std::vector<std::filesystem::path>& dirs,
                       const std::filesystem::path& memory_dir, bool exist_ok, bool fake);

}  // namespace isobox::runtime
