// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/profile.hpp>

#include <algorithm>
#include <utility>

#include <linux/btrfs_tree.h>

namespace vmcsum::btrfs {

std::string profile_name(uint64_t flags)
{
  switch (flags & BTRFS_BLOCK_GROUP_PROFILE_MASK) {
  case 0:
    return "single";
  case BTRFS_BLOCK_GROUP_DUP:
    return "dup";
  case BTRFS_BLOCK_GROUP_RAID0:
    return "raid0";
  case BTRFS_BLOCK_GROUP_RAID1:
    return "raid1";
  case BTRFS_BLOCK_GROUP_RAID1C3:
    return "raid1c3";
  case BTRFS_BLOCK_GROUP_RAID1C4:
    return "raid1c4";
  case BTRFS_BLOCK_GROUP_RAID10:
    return "raid10";
  case BTRFS_BLOCK_GROUP_RAID5:
    return "raid5";
  case BTRFS_BLOCK_GROUP_RAID6:
    return "raid6";
  default:
    return "unknown";
  }
}

unsigned profile_copies(const std::string& profile)
{
  if (profile == "dup" || profile == "raid1" || profile == "raid10") {
    return 2;
  }
  if (profile == "raid1c3") {
    return 3;
  }
  if (profile == "raid1c4") {
    return 4;
  }
  return 1;
}

bool profile_has_duplication(const std::string& profile)
{
  return profile != "single" && profile != "raid0" && profile != "unknown";
}

std::vector<std::string> data_profiles(const std::vector<SpaceInfo>& spaces)
{
  std::vector<std::pair<uint64_t, std::string>> found;
  for (const auto& s : spaces) {
    // Mixed block groups (small filesystems) carry DATA|METADATA; they hold data too.
    if (!(s.flags & BTRFS_BLOCK_GROUP_DATA) || s.total_bytes == 0) {
      continue;
    }
    std::string name = profile_name(s.flags);
    auto it = std::find_if(found.begin(), found.end(), [&](auto& p) { return p.second == name; });
    if (it == found.end()) {
      found.emplace_back(s.total_bytes, name);
    } else {
      it->first += s.total_bytes;
    }
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& p : found) {
    out.push_back(std::move(p.second));
  }
  return out;
}

} // namespace vmcsum::btrfs
