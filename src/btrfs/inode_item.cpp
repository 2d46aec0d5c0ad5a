// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/tree_search.hpp>

#include <utility>

namespace vmcsum::btrfs {

uint64_t le64(const uint8_t* p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | p[i];
  }
  return v;
}

uint32_t le32(const uint8_t* p)
{
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

uint16_t le16(const uint8_t* p)
{
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}

std::optional<InodeItem> parse_inode_item(std::span<const uint8_t> data)
{
  // Offsets of struct btrfs_inode_item (docs/kernel-facts.md §3.3).
  constexpr size_t on_disk_size = 160;
  if (data.size() < on_disk_size) {
    return std::nullopt;
  }
  const uint8_t* p = data.data();
  InodeItem item;
  item.generation = le64(p + 0);
  item.transid = le64(p + 8);
  item.size = le64(p + 16);
  item.nbytes = le64(p + 24);
  item.nlink = le32(p + 40);
  item.uid = le32(p + 44);
  item.gid = le32(p + 48);
  item.mode = le32(p + 52);
  item.flags = le64(p + 64);
  return item;
}

std::vector<std::string> inode_flag_names(uint64_t flags)
{
  static const std::pair<uint64_t, const char*> names[] = {
    {inode_flag::nodatasum, "NODATASUM"},
    {inode_flag::nodatacow, "NODATACOW"},
    {inode_flag::readonly, "READONLY"},
    {inode_flag::nocompress, "NOCOMPRESS"},
    {inode_flag::prealloc, "PREALLOC"},
    {inode_flag::sync, "SYNC"},
    {inode_flag::immutable, "IMMUTABLE"},
    {inode_flag::append, "APPEND"},
    {inode_flag::nodump, "NODUMP"},
    {inode_flag::noatime, "NOATIME"},
    {inode_flag::dirsync, "DIRSYNC"},
    {inode_flag::compress, "COMPRESS"},
    {inode_flag::root_item_init, "ROOT_ITEM_INIT"},
  };
  std::vector<std::string> out;
  for (const auto& [bit, name] : names) {
    if (flags & bit) {
      out.emplace_back(name);
    }
  }
  return out;
}

std::optional<InodeItem> read_inode_item(int fd, uint64_t subvol_id, uint64_t ino,
                                         const std::string& path)
{
  constexpr uint8_t inode_item_key = 1; // BTRFS_INODE_ITEM_KEY
  SearchRange range;
  range.tree_id = subvol_id;
  range.min = {ino, inode_item_key, 0};
  range.max = {ino, inode_item_key, ~0ULL};
  range.batch_bytes = 4096; // one item of 160 bytes and its header
  std::optional<InodeItem> found;
  tree_search(
    fd, range,
    [&](const Key& key, std::span<const uint8_t> data) {
      if (key.objectid == ino && key.type == inode_item_key) {
        found = parse_inode_item(data);
        return false;
      }
      return true;
    },
    path);
  return found;
}

} // namespace vmcsum::btrfs
