// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// A file's EXTENT_DATA items (docs/kernel-facts.md §6): unlike FIEMAP they name the on-disk extent
// each file range points into (disk_bytenr), so the pieces of one extent that a file still
// references after partial overwrites can be found together.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace vmcsum::btrfs {

enum class FileExtentType : uint8_t { inline_data = 0, regular = 1, prealloc = 2 };

struct FileExtent
{
  uint64_t file_offset = 0; // key offset
  uint64_t num_bytes = 0;   // file bytes this item covers (inline: ram_bytes)
  FileExtentType type = FileExtentType::regular;
  uint8_t compression = 0;  // 0 none, 1 zlib, 2 lzo, 3 zstd
  uint64_t disk_bytenr = 0; // 0: a hole (no-holes off) or inline
  uint64_t disk_num_bytes = 0;
  uint64_t extent_offset = 0; // where in the (uncompressed) extent this item starts
  uint64_t generation = 0;

  bool hole() const { return type != FileExtentType::inline_data && disk_bytenr == 0; }
  // The btrfs logical address of file byte `off` (uncompressed regular extents only).
  uint64_t logical_of(uint64_t off) const
  {
    return disk_bytenr + extent_offset + (off - file_offset);
  }
};

// Decodes one btrfs_file_extent_item (53 bytes; inline items only carry the first 21). Throws
// Error{internal} when the item is shorter than its type needs.
FileExtent decode_file_extent(uint64_t file_offset, std::span<const uint8_t> item);

// The EXTENT_DATA items of inode `ino` in the subvolume of fd, in file-offset order
// (TREE_SEARCH_V2: CAP_SYS_ADMIN). Call sync_fs() first: delalloc has no item yet.
std::vector<FileExtent> file_extents(int fd, uint64_t ino, const std::string& path);

// The same items one at a time, without keeping them (a fragmented image has 100k+), those
// whose key offset (file offset) is in [from, to]; stops when `visit` returns false.
void for_each_file_extent(int fd, uint64_t ino, const std::string& path,
                          const std::function<bool(const FileExtent&)>& visit, uint64_t from = 0,
                          uint64_t to = ~0ULL);

// Whether a leaf holding any of inode `ino`'s items, its INODE_ITEM to its last EXTENT_DATA
// item, was written in transaction `transid` or later (commit_transaction() + 1, taken before
// the items were read). Every change to a tree block is a copy-on-write that gives the block, and
// the pointers down to it, the running transaction's number: false means none of those items
// changed since, and the search walked only the subtrees written since
// (SearchRange::min_transid), not the file's 100k items. A write, truncation, hole punch,
// clone or defragmentation also updates the inode item (nbytes, times), so removed items are
// seen too; relocation rewrites EXTENT_DATA items in place (replace_file_extents() in
// fs/btrfs/relocation.c). True may also be a neighbour's change in a shared leaf: the caller
// then compares the items themselves.
bool inode_items_changed_since(int fd, uint64_t ino, uint64_t transid, const std::string& path);

} // namespace vmcsum::btrfs
