// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Paths of inodes of any subvolume of a mounted btrfs: the kernel log and back references name
// files by (subvolume id, inode); an admin needs a path.
#pragma once

#include <vmcsum/sys/fd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vmcsum::core {

// One btrfs mount: the subvolume it shows, and its filesystem's identity.
struct MountedSubvol
{
  std::string target;
  uint64_t root = 0;
  std::string fsid;
  std::vector<std::string> devices; // basenames, as the kernel log's "(device X)" names them
  std::shared_ptr<sys::Fd> fd;
};

// Every btrfs mount that can be opened (needs CAP_SYS_ADMIN for the subvolume id).
std::vector<MountedSubvol> btrfs_mounts(const std::string& mountinfo = "/proc/self/mountinfo");

// The path of inode `ino` of subvolume `root`, through the mounts `accept` lets through: the
// subvolume's own mount first, else its directory below a mounted ancestor subvolume
// (BTRFS_IOC_INO_PATHS; libbtrfsutil for the subvolume's path). nullopt when none shows it.
std::optional<std::string> inode_path(const std::vector<MountedSubvol>& mounts, uint64_t root,
                                      uint64_t ino,
                                      const std::function<bool(const MountedSubvol&)>& accept);

} // namespace vmcsum::core
