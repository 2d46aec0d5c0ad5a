// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Stored data checksums from the csum tree (tree 7; docs/kernel-facts.md §6).
#pragma once

#include <vmcsum/btrfs/ioctl.hpp>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace vmcsum::btrfs {

// Called once per sector, in ascending logical order. `csum` holds the csum_size stored bytes,
// or is empty when the csum tree has none for that sector (NODATASUM inode, preallocated or
// unused space, a hole). Return false to stop.
using SectorCsumVisitor = std::function<bool(uint64_t logical, std::span<const uint8_t> csum)>;

// Largest byte range one EXTENT_CSUM item can cover: its body fits in one leaf
// (nodesize - sizeof(btrfs_header) - sizeof(btrfs_item)). The kernel writes smaller items
// (MAX_CSUM_ITEMS in fs/btrfs/file-item.c), but other writers (btrfs-progs) need not.
uint64_t max_csum_item_span(uint32_t nodesize, uint32_t sectorsize, uint16_t csum_size);

// The pure part of the lookup, unit-testable: turns EXTENT_CSUM items, fed in ascending key
// order and starting anywhere before the range, into one visit per sector of the range.
// The range is widened to whole sectors. Items may be split anywhere; an item that overlaps
// an earlier one (a corrupt tree) contributes only the sectors not yet visited.
class CsumRangeWalker
{
public:
  // Throws Error{internal} for a zero sectorsize or csum_size.
  CsumRangeWalker(uint64_t logical, uint64_t length, uint32_t sectorsize, uint16_t csum_size,
                  SectorCsumVisitor visit);
  // One item: key offset `item_start` (logical of its first sector) and body. Returns false
  // once the range is complete or the visitor stopped, so the caller can end its search.
  // Throws Error{internal} for an item the tree-checker would reject (start not sector
  // aligned, body not a whole number of csums).
  bool feed(uint64_t item_start, std::span<const uint8_t> item);
  // Visits every sector not reached by an item as having no csum.
  void finish();

private:
  bool emit_missing(uint64_t until);
  uint64_t m_next;
  uint64_t m_end;
  uint32_t m_sectorsize;
  uint16_t m_csum_size;
  bool m_stopped = false;
  SectorCsumVisitor m_visit;
};

// Visits every sector of [logical, logical + length) with its stored csum, streaming the csum
// tree with TREE_SEARCH_V2 (needs CAP_SYS_ADMIN; Error{permission} otherwise). Memory is
// bounded by one search buffer. Start the search early enough to see the item that begins
// before `logical` and covers it. Call sync_fs() first: csums reach the tree when the
// ordered extent completes. Throws Error{unsupported} when info lacks the csum fields.
void for_each_sector_csum(int fd, const FsInfo& info, uint64_t logical, uint64_t length,
                          const SectorCsumVisitor& visit, const std::string& path);

// The stored csums of a bounded range, for callers that work in batches.
struct RangeCsums
{
  uint64_t logical = 0; // first sector (rounded down to the sector size)
  uint32_t sectorsize = 0;
  uint16_t csum_size = 0;
  std::vector<uint8_t> csums;   // sector i at i * csum_size (zeros where absent)
  std::vector<uint8_t> present; // 1 when sector i has a csum

  size_t sectors() const { return present.size(); }
  bool has(size_t i) const { return present[i] != 0; }
  // The stored csum of sector i, or an empty span when it has none.
  std::span<const uint8_t> csum(size_t i) const;
};

// Fills `out` (reusing its storage) with the csums of [logical, logical + length), widened to
// whole sectors. Memory: sectors * (csum_size + 1) bytes, so keep the range bounded.
void read_csums(int fd, const FsInfo& info, uint64_t logical, uint64_t length, RangeCsums& out,
                const std::string& path);

} // namespace vmcsum::btrfs
