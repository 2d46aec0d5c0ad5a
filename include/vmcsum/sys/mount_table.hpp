// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vmcsum::sys {

struct MountEntry
{
  std::string target; // mount point
  std::string source; // device
  std::string fstype;
  std::string root;    // path inside the filesystem that is mounted (btrfs: the subvolume)
  std::string options; // VFS and filesystem options, comma separated

  // The value of "name=value", "" for a bare "name", nullopt when absent.
  std::optional<std::string> option(const std::string& name) const;
};

// The mount table (/proc/self/mountinfo or a fixture), parsed once with libmount.
class MountTable
{
public:
  // Throws Error when the file cannot be read or parsed.
  explicit MountTable(const std::string& mountinfo = "/proc/self/mountinfo");
  ~MountTable();
  MountTable(MountTable&&) noexcept;
  MountTable& operator=(MountTable&&) noexcept;

  // The mount holding `canonical_path` (an absolute path without symlinks): the longest mount
  // point that is a prefix of it, the last one mounted winning.
  std::optional<MountEntry> find(const std::string& canonical_path) const;
  // Every mount of the given type, in mount order.
  std::vector<MountEntry> of_type(const std::string& fstype) const;

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace vmcsum::sys
