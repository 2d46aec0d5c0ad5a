// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// plan_repair(): the ranges a repair rewrites, from facts gathered beforehand (pure).
#include <vmcsum/repair/repair_backup.hpp>
#include <vmcsum/repair/repair_plan.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/set/rewrite.hpp>

#include <algorithm>

namespace vmcsum::core {

namespace {

// The item holding file byte `off`; items come in file-offset order (the b-tree's key order)
// and do not overlap.
const btrfs::FileExtent* item_at(const std::vector<btrfs::FileExtent>& items, uint64_t off)
{
  auto it = std::upper_bound(
    items.begin(), items.end(), off,
    [](uint64_t o, const btrfs::FileExtent& item) { return o < item.file_offset; });
  if (it == items.begin()) {
    return nullptr;
  }
  --it;
  return off < it->file_offset + it->num_bytes ? &*it : nullptr;
}

// Every file range that references a damaged extent: rewriting them all is what frees it.
std::vector<RewriteRange> ranges_of_damaged(const RepairPlanInput& in,
                                            const std::set<uint64_t>& damaged)
{
  std::vector<RewriteRange> ranges;
  for (const auto& it : in.extents) {
    if (it.type != btrfs::FileExtentType::regular || !damaged.count(it.disk_bytenr) ||
        it.file_offset >= in.size) {
      continue;
    }
    RewriteRange rr;
    rr.offset = it.file_offset;
    rr.length = std::min(it.num_bytes, in.size - it.file_offset);
    rr.old_logical = it.logical_of(it.file_offset);
    rr.extent_bytenr = it.disk_bytenr;
    rr.extent_bytes = it.disk_num_bytes;
    ranges.push_back(rr);
  }
  return ranges;
}

// The ranges a pending backup names that the damaged extents do not cover already: an
// interrupted run may have rewritten part of them, so they are written again whole.
void add_resumed(const RepairPlanInput& in, std::vector<RewriteRange>& ranges)
{
  for (const auto& [off, len] : in.resumed) {
    const bool covered = std::any_of(ranges.begin(), ranges.end(), [&](const RewriteRange& r) {
      return r.offset <= off && off + len <= r.offset + r.length;
    });
    if (covered || off >= in.size || len == 0) {
      continue;
    }
    RewriteRange rr;
    rr.offset = off;
    rr.length = std::min(len, in.size - off);
    rr.resumed = true;
    if (const auto* it = item_at(in.extents, off); it && !it->hole()) {
      rr.old_logical = it->logical_of(off);
      rr.extent_bytenr = it->disk_bytenr;
      rr.extent_bytes = it->disk_num_bytes;
    }
    ranges.push_back(rr);
  }
}

// Sorted, and overlaps (a resumed range inside two items) trimmed, so no byte is written twice.
void sort_and_trim(std::vector<RewriteRange>& ranges)
{
  std::sort(ranges.begin(), ranges.end(),
            [](const RewriteRange& a, const RewriteRange& b) { return a.offset < b.offset; });
  uint64_t reached = 0;
  for (auto& r : ranges) {
    const uint64_t end = r.offset + r.length;
    if (r.offset < reached) {
      r.offset = reached;
      r.length = end > reached ? end - reached : 0;
    }
    reached = std::max(reached, end);
  }
  ranges.erase(std::remove_if(ranges.begin(), ranges.end(),
                              [](const RewriteRange& r) { return r.length == 0; }),
               ranges.end());
}

} // namespace

RepairPlan plan_repair(const RepairPlanInput& in)
{
  RepairPlan p;
  for (const auto& [off, r] : in.rewrite) {
    const auto* it = item_at(in.extents, off);
    if (!it || it->type != btrfs::FileExtentType::regular || it->compression != 0 || it->hole()) {
      p.refusal = RepairRefusal{RepairAction::failed, "changed",
                                "offset " + std::to_string(off) +
                                  " is no longer in the extent the scrub read: the file changed "
                                  "meanwhile; run the repair again"};
      return p;
    }
    p.damaged.insert(it->disk_bytenr);
  }
  p.ranges = ranges_of_damaged(in, p.damaged);
  add_resumed(in, p.ranges);
  sort_and_trim(p.ranges);
  unsigned copies = 1;
  for (const auto& [off, r] : in.rewrite) {
    if (r.mirror) {
      ++p.device_sectors;
      copies = std::max<unsigned>(copies, static_cast<unsigned>(r.sector.copies.size()));
    }
  }
  for (const auto& r : p.ranges) {
    p.rewrite_bytes += r.length;
  }
  // Header, every copy of each bad sector written back from a device, and the records: one
  // hashed stretch per read chunk of each range and one more after each bad sector (format 2:
  // the bytes rewritten as they are need only their digest), 80 bytes each, rounded up.
  const uint64_t chunk = std::clamp<uint64_t>(in.chunk, in.sectorsize, k_max_hashed);
  uint64_t stretches = 0;
  for (const auto& r : p.ranges) {
    stretches += (r.length + chunk - 1) / chunk + 1;
  }
  p.backup_estimate = 4096 + p.device_sectors * copies * in.sectorsize +
                      (stretches + p.device_sectors * (copies + 2)) * 80;
  p.needed_bytes = p.rewrite_bytes + space_margin(p.rewrite_bytes);
  if (in.free_bytes && *in.free_bytes < p.needed_bytes) {
    p.refusal =
      RepairRefusal{RepairAction::refused, "no-space",
                    "needs " + human_bytes(p.needed_bytes) + " free on its filesystem to rewrite " +
                      human_bytes(p.rewrite_bytes) + " (copy-on-write), has " +
                      human_bytes(*in.free_bytes) + "; nothing was changed"};
  }
  return p;
}

} // namespace vmcsum::core
