// Cgroup over the unified hierarchy (cgroup v2): one directory per group, limits in
// memory.max, memory.swap.max, pids.max, cpu.max and cpu.weight.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "runtime/cgroup.h"

namespace isobox::runtime {

class CgroupV2 final : public Cgroup {
 public:
  // `relative` is below `root`; `controllers` are those to enable for children.
  CgroupV2(std::filesystem::path root, std::filesystem::path relative,
           std::vector<std::string> controllers);

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
  std::filesystem::path FreezerDir() const override { return dir_; }
  Status Thaw() override;
  Status KillAll() override;
  Status Destroy(std::chrono::milliseconds timeout) override;
  Result<CgroupStats> Stats() override;
  Result<uint64_t> OomKills() override;
  std::vector<pid_t> Pids() override;

 private:
  std::filesystem::path File(std::string_view name) const { return dir_ / name; }

  std::filesystem::path root_;
  std::filesystem::path relative_;
  std::filesystem::path dir_;
  std::vector<std::string> controllers_;
};

class CgroupManagerV2 final : public CgroupManager {
 public:
  CgroupManagerV2(std::filesystem::path root, std::string parent);

  int Version() const override { return 2; }
  Result<std::unique_ptr<Cgroup>> Create(std::string_view name,
                                         const CgroupLimits& limits) override;
  Result<std::unique_ptr<Cgroup>> Open(std::string_view name) override;
  std::vector<std::string> List() override;

 private:
  // The controllers Isobox uses that the root offers; memory and pids are required.
  Result<std::vector<std::string>> Controllers();
  // Creates the parent group(s) and enables the controllers down to the parent's children.
  Status PrepareParent(const std::vector<std::string>& controllers);

  std::filesystem::path root_;
  std::filesystem::path parent_;
};

// Writes "+c ..." to dir/cgroup.subtree_control for each controller not yet enabled.
Status EnableControllers(const std::filesystem::path& dir,
                         const std::vector<std::string>& controllers);

}  // namespace isobox::runtime
