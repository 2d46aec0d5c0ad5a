// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Scrub on RAID5/RAID6 data (issue 17): the parts of scrub that differ from the profiles with
// plain copies. The per-copy pass reads each sector's data unit like a RAID0 copy; a bad sector
// gets its rebuilds from the rest of its full stripe as further copies; and the parity of every
// full stripe the file touches is checked against its data units.
#pragma once

#include <vmcsum/btrfs/chunk_map.hpp>
#include <vmcsum/checksum.hpp>
#include <vmcsum/scrub/scrub.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace vmcsum::core {

// Reads `len` bytes of device `devid` at `physical` into `out` (O_DIRECT-aligned); false when
// the device is missing or the read fails.
using DeviceRead = std::function<bool(uint64_t devid, uint64_t physical, uint8_t* out, size_t len)>;

// The copies of `logical` the per-copy pass reads and checksums: on RAID5/6 the data unit on its
// device (mirror 1, the kernel's first read), contiguous to the end of the stripe unit; on every
// other profile ChunkMap::map().
std::vector<btrfs::Copy> device_copies(const btrfs::ChunkMap& chunks, uint64_t logical);
// How many bytes from `logical` (at most `want`) every copy of device_copies() holds
// contiguously on its device, so that one request per copy reads them: across RAID0/RAID10
// stripe units whose next unit lies right after on the same device, never across a chunk's end
// or a RAID5/6 unit.
uint64_t contiguous_length(const btrfs::ChunkMap& chunks, uint64_t logical, uint64_t want);

// The full stripe holding `logical` (its first data byte) when it lies in a RAID5/6 chunk.
std::optional<uint64_t> full_stripe_of(const btrfs::ChunkMap& chunks, uint64_t logical);

// A rebuilt copy of one sector and its bytes.
struct RebuiltCopy
{
  SectorCopy copy;
  std::vector<uint8_t> bytes; // empty when a member could not be read (copy.read_error)
};

// The rebuilds of the sector at `logical` (RAID5: from P; RAID6: from P, from Q, and from P and
// Q with another data unit taken as lost too: the one whose choice makes it match, else the
// first), each checksummed against `expected`. Mirror numbers go on from `next_mirror`.
std::vector<RebuiltCopy> rebuilt_copies(const btrfs::Chunk& chunk, uint64_t logical, uint32_t ss,
                                        const DeviceRead& read, Checksummer& sum,
                                        std::span<const uint8_t> expected,
                                        const std::map<uint64_t, std::string>& dev_paths,
                                        unsigned next_mirror);

// Checks P (and Q) of the full stripe starting at `full_logical` over its whole stripe units.
// `bad_logicals`: data sectors this scrub found bad (they explain a parity mismatch in their
// row). A member that cannot be read leaves the full stripe unchecked: a note says so.
void check_full_stripe(const btrfs::Chunk& chunk, uint64_t full_logical, uint32_t ss,
                       const DeviceRead& read, const std::map<uint64_t, std::string>& dev_paths,
                       const std::set<uint64_t>& bad_logicals, FileScrub& f);
// The same for `rows` consecutive full stripes of one chunk from `first_logical` on, read with one
// request per device (falls back to one full stripe at a time when a read fails).
void check_full_stripes(const btrfs::Chunk& chunk, uint64_t first_logical, uint64_t rows,
                        uint32_t ss, const DeviceRead& read,
                        const std::map<uint64_t, std::string>& dev_paths,
                        const std::set<uint64_t>& bad_logicals, FileScrub& f);

} // namespace vmcsum::core
