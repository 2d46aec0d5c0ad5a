// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// plan_repair(): which file ranges a repair rewrites, and whether it may, from facts gathered
// beforehand (the sectors to rewrite, the file's EXTENT_DATA items, the ranges of pending
// backups, free space). Pure: no I/O, unit-tested row by row (tests/unit/test_repair_plan.cpp).
#pragma once

#include <vmcsum/btrfs/file_extents.hpp>
#include <vmcsum/repair/repair.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace vmcsum::core {

// A bad sector to rewrite and the device copy whose bytes are written back (nullopt: the bytes
// as btrfs reads them, a good copy, after a read repair did not heal every copy).
struct SectorToRewrite
{
  BadSector sector;
  std::optional<unsigned> mirror;
};

struct RepairPlanInput
{
  std::map<uint64_t, SectorToRewrite> rewrite;        // by file offset
  std::vector<btrfs::FileExtent> extents;             // in key (file offset) order
  std::vector<std::pair<uint64_t, uint64_t>> resumed; // ranges of pending backups (offset, len)
  uint64_t size = 0;                                  // the file's size
  uint32_t sectorsize = 4096;
  std::optional<uint64_t> free_bytes; // on the image's filesystem (nullopt: unknown)
  // Bytes per read of the backup (one hashed record each): shorter under --limit-rate.
  uint64_t chunk = 4u << 20;
};

struct RepairRefusal
{
  RepairAction action = RepairAction::refused; // refused (nothing done) or failed (changed)
  std::string code;                            // changed, no-space
  std::string message;
};

struct RepairPlan
{
  // Sorted by offset, not overlapping (a resumed range inside two items is trimmed), none empty.
  std::vector<RewriteRange> ranges;
  std::set<uint64_t> damaged;   // disk_bytenr of every extent a bad sector lies in
  uint64_t rewrite_bytes = 0;   // sum of the ranges' lengths
  uint64_t device_sectors = 0;  // bad sectors written back from a device copy
  uint64_t backup_estimate = 0; // bytes of the backup file, header and records included
  uint64_t needed_bytes = 0;    // free space the rewrite needs (copy-on-write)
  std::optional<RepairRefusal> refusal;
};

RepairPlan plan_repair(const RepairPlanInput& in);

} // namespace vmcsum::core
