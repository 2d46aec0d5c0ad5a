// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

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
};

// Called for each item; return false to stop the walk early.
using ItemVisitor = std::function<bool(const Key& key, std::span<const uint8_t> data)>;

// Walks every item in [range.min, range.max] (compared as whole keys, as the b-tree orders them)
// with BTRFS_IOC_TREE_SEARCH_V2 in 64 KiB batches. Needs CAP_SYS_ADMIN: throws Error with
// Errc::permission otherwise.
void tree_search(int fd, const SearchRange& range, const ItemVisitor& visit,
                 const std::string& path);

// The key right after `k` in b-tree order; false when k is the largest key.
bool next_key(Key& k);

} // namespace vmcsum::btrfs
