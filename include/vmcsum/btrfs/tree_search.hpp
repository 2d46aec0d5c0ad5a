// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

namespace vmcsum::btrfs {

struct Key
{
  uint64_t objectid = 0;
  uint8_t type = 0;
  uint64_t offset = 0;
};

struct SearchRange
{
  uint64_t tree_id = 0; // 0 = the subvolume tree of the fd
  Key min;
  Key max{~0ULL, 0xff, ~0ULL};
  // Bytes of items one ioctl returns. The buffer is zeroed once per search (valgrind cannot see
  // what TREE_SEARCH_V2 writes), so a lookup of one small item asks for little: 64 KiB zeroed
  // per image was 12% of an audit's instructions.
  size_t batch_bytes = 64 * 1024;
  // Only items of leaves written in this transaction or later: the kernel skips every subtree
  // whose pointer generation is older (btrfs_search_forward() in fs/btrfs/ctree.c, called by
  // search_ioctl() with sk->min_transid; what `btrfs subvolume find-new` uses).
  uint64_t min_transid = 0;
};

// Called for each item; return false to stop the walk early.
using ItemVisitor = std::function<bool(const Key& key, std::span<const uint8_t> data)>;

// Walks every item in [range.min, range.max] (compared as whole keys, as the b-tree orders them)
// with BTRFS_IOC_TREE_SEARCH_V2 in batches of range.batch_bytes. Needs CAP_SYS_ADMIN: throws Error
// with Errc::permission otherwise.
void tree_search(int fd, const SearchRange& range, const ItemVisitor& visit,
                 const std::string& path);

// Decodes the result buffer of one BTRFS_IOC_TREE_SEARCH_V2 call: `nr_items` times a
// struct btrfs_ioctl_search_header (transid, objectid, offset, type, len) followed by `len` bytes
// of item. Calls visit per item and leaves the last item's key in `last`. Returns false when the
// visitor stopped the walk. Throws Error{internal} when a header or an item would overrun
// `buf` (the kernel never returns that; the check keeps a wrong nr_items from reading past the
// buffer).
bool decode_search_buffer(std::span<const uint8_t> buf, uint32_t nr_items, const ItemVisitor& visit,
                          Key& last, const std::string& path = {});

// The key right after `k` in b-tree order; false when k is the largest key.
bool next_key(Key& k);

} // namespace vmcsum::btrfs
