// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What the probe tools (core_probe, raid56_probe) share: the probed file opened with its csums
// committed, its extents and filesystem facts, and main()'s usage and error handling.
#pragma once

#include <vmcsum/btrfs/chunk_map.hpp>
#include <vmcsum/btrfs/file_extents.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/fd.hpp>

#include <cstdint>
#include <exception>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <linux/fiemap.h>
#include <unistd.h>

namespace vmcsum::probe_tool {

// Extents whose sectors do not sit 1:1 at fe_physical.. on disk.
constexpr uint32_t k_not_1to1 = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC |
                                FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_DATA_ENCRYPTED |
                                FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_DATA_INLINE;

struct Probed
{
  sys::Fd fd;
  btrfs::FsInfo info;
  btrfs::ChunkMap chunks;
  std::map<uint64_t, std::string> paths; // device path by devid
  std::vector<btrfs::Extent> extents;
};

// Opens `file`, writes it out (fsync) and commits the transaction, so that the csum items of
// what was written are in the tree TREE_SEARCH reads, then reads what the probes need.
inline Probed open_probed(const std::string& file)
{
  sys::Fd fd = sys::open_or_throw(file, O_RDONLY);
  if (::fsync(*fd) < 0) {
    throw_errno("fsync", file);
  }
  const btrfs::FsInfo info = btrfs::fs_info(*fd, file);
  btrfs::sync_fs(*fd, file);
  btrfs::ChunkMap chunks = btrfs::ChunkMap::read(*fd, file);
  auto paths = btrfs::device_paths(btrfs::dev_infos(*fd, info, file));
  std::vector<btrfs::Extent> extents;
  btrfs::for_each_extent(*fd, file, true, [&](const btrfs::Extent& e) { extents.push_back(e); });
  return Probed{std::move(fd), info, std::move(chunks), std::move(paths), std::move(extents)};
}

// `name FILE`: exit 64 on a wrong command line, 1 with a message when `run` throws.
template <typename Run>
int probe_main(int argc, char** argv, const char* name, Run run)
{
  if (argc != 2) {
    std::cerr << "usage: " << name << " FILE\n";
    return 64;
  }
  try {
    return run(std::string(argv[1]));
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << '\n';
    return 1;
  }
}

} // namespace vmcsum::probe_tool
