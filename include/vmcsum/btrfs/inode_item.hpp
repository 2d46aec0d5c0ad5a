// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vmcsum::btrfs {

// BTRFS_INODE_* bits of btrfs_inode_item.flags (btrfs_tree.h; not all are in older uapi
// headers, so they are spelled out here).
namespace inode_flag {
constexpr uint64_t nodatasum = 1ULL << 0;
constexpr uint64_t nodatacow = 1ULL << 1;
constexpr uint64_t readonly = 1ULL << 2;
constexpr uint64_t nocompress = 1ULL << 3;
constexpr uint64_t prealloc = 1ULL << 4;
constexpr uint64_t sync = 1ULL << 5;
constexpr uint64_t immutable = 1ULL << 6;
constexpr uint64_t append = 1ULL << 7;
constexpr uint64_t nodump = 1ULL << 8;
constexpr uint64_t noatime = 1ULL << 9;
constexpr uint64_t dirsync = 1ULL << 10;
constexpr uint64_t compress = 1ULL << 11;
constexpr uint64_t root_item_init = 1ULL << 31;
} // namespace inode_flag

// The fields of struct btrfs_inode_item vmcsum uses (packed, little-endian, 160 bytes).
struct InodeItem
{
  uint64_t generation = 0;
  uint64_t transid = 0;
  uint64_t size = 0;
  uint64_t nbytes = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mode = 0;
  uint64_t flags = 0;
};

// Parses an INODE_ITEM body; nullopt when it is shorter than the on-disk structure.
std::optional<InodeItem> parse_inode_item(std::span<const uint8_t> data);

// Names of the set flags as btrfs-progs' dump-tree prints them ("NODATASUM", "NODATACOW", ...).
std::vector<std::string> inode_flag_names(uint64_t flags);

// Reads the inode item of `ino` in the subvolume tree `subvol_id` with TREE_SEARCH (needs
// CAP_SYS_ADMIN). nullopt when the tree has no such inode (it is not committed yet).
std::optional<InodeItem> read_inode_item(int fd, uint64_t subvol_id, uint64_t ino,
                                         const std::string& path);

uint64_t le64(const uint8_t* p);
uint32_t le32(const uint8_t* p);
uint16_t le16(const uint8_t* p);

} // namespace vmcsum::btrfs
