// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/file_extents.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/error.hpp>

namespace vmcsum::btrfs {

namespace {
constexpr uint8_t k_extent_data_key = 108; // BTRFS_EXTENT_DATA_KEY
// Offsets in struct btrfs_file_extent_item (packed, little-endian).
constexpr size_t k_generation = 0, k_ram_bytes = 8, k_compression = 16, k_type = 20,
                 k_disk_bytenr = 21, k_disk_num_bytes = 29, k_offset = 37, k_num_bytes = 45,
                 k_item_size = 53;
} // namespace

FileExtent decode_file_extent(uint64_t file_offset, std::span<const uint8_t> item)
{
  if (item.size() < k_disk_bytenr) {
    throw Error(Errc::internal, "file extent item of " + std::to_string(item.size()) + " bytes");
  }
  FileExtent e;
  e.file_offset = file_offset;
  e.generation = le64(item.data() + k_generation);
  e.compression = item[k_compression];
  e.type = static_cast<FileExtentType>(item[k_type]);
  if (e.type == FileExtentType::inline_data) {
    e.num_bytes = le64(item.data() + k_ram_bytes);
    return e;
  }
  if (item.size() < k_item_size) {
    throw Error(Errc::internal, "file extent item of " + std::to_string(item.size()) + " bytes");
  }
  e.disk_bytenr = le64(item.data() + k_disk_bytenr);
  e.disk_num_bytes = le64(item.data() + k_disk_num_bytes);
  e.extent_offset = le64(item.data() + k_offset);
  e.num_bytes = le64(item.data() + k_num_bytes);
  return e;
}

void for_each_file_extent(int fd, uint64_t ino, const std::string& path,
                          const std::function<bool(const FileExtent&)>& visit, uint64_t from,
                          uint64_t to)
{
  SearchRange r;
  r.min = {ino, k_extent_data_key, from};
  r.max = {ino, k_extent_data_key, to};
  tree_search(
    fd, r,
    [&](const Key& k, std::span<const uint8_t> data) {
      if (k.objectid == ino && k.type == k_extent_data_key) {
        return visit(decode_file_extent(k.offset, data));
      }
      return true;
    },
    path);
}

bool inode_items_changed_since(int fd, uint64_t ino, uint64_t transid, const std::string& path)
{
  constexpr uint8_t inode_item_key = 1; // BTRFS_INODE_ITEM_KEY
  SearchRange r;
  r.min = {ino, inode_item_key, 0};
  r.max = {ino, k_extent_data_key, ~0ULL};
  r.min_transid = transid;
  r.batch_bytes = 4096; // one item is the answer
  bool changed = false;
  tree_search(
    fd, r,
    [&](const Key& k, std::span<const uint8_t>) {
      changed = k.objectid == ino; // whole keys in range: always; checked all the same
      return !changed;
    },
    path);
  return changed;
}

std::vector<FileExtent> file_extents(int fd, uint64_t ino, const std::string& path)
{
  std::vector<FileExtent> out;
  for_each_file_extent(fd, ino, path, [&](const FileExtent& e) {
    out.push_back(e);
    return true;
  });
  return out;
}

} // namespace vmcsum::btrfs
