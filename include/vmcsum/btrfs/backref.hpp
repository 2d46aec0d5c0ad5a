// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Who references an extent, and what an inode is called: BTRFS_IOC_LOGICAL_INO_V2 and
// BTRFS_IOC_INO_PATHS (both CAP_SYS_ADMIN).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vmcsum::btrfs {

struct ExtentRef
{
  uint64_t root = 0; // subvolume id
  uint64_t inode = 0;
  uint64_t offset = 0; // file offset of the reference
};

// Every (root, inode, offset) referencing the extent that contains `logical` (the whole extent,
// whichever part is referenced: IGNORE_OFFSET), at most `max` of them. Throws Error.
std::vector<ExtentRef> extent_refs(int fd, uint64_t logical, const std::string& path,
                                   size_t max = 4096);

// The paths of inode `ino` in the subvolume of fd, relative to that subvolume (at most `max`).
// Empty when it has none (deleted, or an orphan). Throws Error for other failures.
std::vector<std::string> inode_paths(int fd, uint64_t ino, const std::string& path,
                                     size_t max = 16);

// The pure decoders of the two ioctls' struct btrfs_data_container (u32 bytes_left,
// bytes_missing, elem_cnt, elem_missed, then u64 val[]), given the whole buffer handed to the
// kernel. Both trust nothing in it: elem_cnt is clamped to the values the buffer holds, and a
// name offset outside the buffer ends the list.
// LOGICAL_INO_V2: val[] holds (inode, offset, root) triples.
std::vector<ExtentRef> decode_logical_ino(std::span<const uint8_t> container);
// INO_PATHS: val[i] is the offset of the i-th NUL-terminated name from &val[0].
std::vector<std::string> decode_ino_paths(std::span<const uint8_t> container, size_t max);

} // namespace vmcsum::btrfs
