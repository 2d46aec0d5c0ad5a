// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Typed wrappers of the btrfs and generic file ioctls vmcsum needs. Each throws vmcsum::Error
// naming the request and the path; privilege needs are noted where the kernel has them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vmcsum::btrfs {

// btrfs_tree.h enum btrfs_csum_type.
enum class CsumType : uint16_t { crc32c = 0, xxhash64 = 1, sha256 = 2, blake2b = 3 };
// Names as btrfs-progs prints them ("crc32c", "xxhash64", "sha256", "blake2": BLAKE2b-256),
// or "unknown(N)".
std::string csum_type_name(uint16_t type);

struct FsInfo
{
  std::string fsid; // canonical UUID text
  uint64_t num_devices = 0;
  uint64_t max_devid = 0;
  uint32_t nodesize = 0;
  uint32_t sectorsize = 0;
  uint16_t csum_type = 0;
  uint16_t csum_size = 0;
  bool csum_info_valid = false; // kernels before 5.5 do not fill csum_type/csum_size
  uint64_t generation = 0;
};
// BTRFS_IOC_FS_INFO; no privilege needed.
FsInfo fs_info(int fd, const std::string& path);

struct DevInfo
{
  uint64_t devid = 0;
  std::string path;
  uint64_t total_bytes = 0;
  uint64_t bytes_used = 0;
};
// BTRFS_IOC_DEV_INFO for every devid up to max_devid (holes skipped); no privilege needed.
std::vector<DevInfo> dev_infos(int fd, const FsInfo& info, const std::string& path);

struct DevStats
{
  uint64_t write_errs = 0, read_errs = 0, flush_errs = 0, corruption_errs = 0, generation_errs = 0;
};
// BTRFS_IOC_GET_DEV_STATS (read only, never resets); no privilege needed.
DevStats dev_stats(int fd, uint64_t devid, const std::string& path);

// BTRFS_IOC_INO_LOOKUP with treeid 0 / objectid 256: the id of the subvolume holding fd.
// The kernel allows this special case without privilege.
uint64_t subvolume_id(int fd, const std::string& path);

struct SpaceInfo
{
  uint64_t flags = 0; // BTRFS_BLOCK_GROUP_* type and profile bits
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
};
// BTRFS_IOC_SPACE_INFO (what `btrfs filesystem df` shows); no privilege needed.
std::vector<SpaceInfo> space_info(int fd, const std::string& path);

// BTRFS_IOC_SYNC: commits the running transaction, so that TREE_SEARCH sees delayed inode
// updates (docs/kernel-facts.md §3.3). No privilege needed.
void sync_fs(int fd, const std::string& path);

// Commits the running transaction, if there is one, and waits until it is on disk
// (BTRFS_IOC_START_SYNC, BTRFS_IOC_WAIT_SYNC; btrfs_ioctl_start_sync() in fs/btrfs/ioctl.c
// returns the last committed one when none runs). Returns that transaction: every tree block
// changed from then on is written in a later one.
uint64_t commit_transaction(int fd, const std::string& path);

// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (the chattr attributes; FS_NOCOW_FL is 'C').
uint32_t get_attr_flags(int fd, const std::string& path);
void set_attr_flags(int fd, uint32_t flags, const std::string& path);

struct Extent
{
  uint64_t logical = 0;  // file offset
  uint64_t physical = 0; // on btrfs: the btrfs logical address, not a device offset
  uint64_t length = 0;
  uint32_t flags = 0; // FIEMAP_EXTENT_*
};
// FS_IOC_FIEMAP over the whole file, streamed in batches so memory stays bounded; `sync`
// adds FIEMAP_FLAG_SYNC (flush delalloc first so every extent has an address).
void for_each_extent(int fd, const std::string& path, bool sync,
                     const std::function<void(const Extent&)>& visit);

} // namespace vmcsum::btrfs
