// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// RAID5/RAID6 chunks: where a logical address's data lies, which full stripe it belongs to and
// where that full stripe's other members are (the mapping), and the parity arithmetic over them
// (P/Q generation and check, rebuilding lost data units; ISA-L). Unlike the other profiles, the
// "other copies" of a RAID5/6 sector are computations, not bytes on a device.
#pragma once

#include <vmcsum/btrfs/chunk_map.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace vmcsum::btrfs {

// One stripe unit (stripe_len bytes) of a full stripe on its device.
struct StripeUnit
{
  uint64_t devid = 0;
  uint64_t physical = 0; // byte offset of the unit's first byte on the device
  bool operator==(const StripeUnit&) const = default;
};

// A full stripe: data.size() consecutive stripe_len units of logical space and their parity.
// Every member sits at the same offset on its device (row * stripe_len into the chunk's stripe);
// the members rotate over the devices from one full stripe to the next.
struct FullStripe
{
  uint64_t logical = 0;         // logical address of data[0]'s first byte
  uint64_t stripe_len = 0;      // bytes per unit (64 KiB, BTRFS_STRIPE_LEN)
  uint64_t row = 0;             // full stripe number in the chunk: the rotation
  std::vector<StripeUnit> data; // data[j] holds [logical + j*stripe_len, + stripe_len)
  StripeUnit p;
  std::optional<StripeUnit> q; // RAID6 only
};

// Where one logical address of a RAID5/6 chunk lies.
struct Raid56Place
{
  FullStripe full;
  unsigned data_index = 0;  // the data unit holding the address
  uint64_t unit_offset = 0; // its offset in that unit
  uint64_t devid() const { return full.data[data_index].devid; }
  uint64_t physical() const { return full.data[data_index].physical + unit_offset; }
};

// 1 for RAID5, 2 for RAID6, 0 for every other profile.
unsigned parity_stripes(const Chunk& chunk);
bool is_raid56(const Chunk& chunk);

// The place of `logical` in a RAID5/6 chunk, with the arithmetic of the kernel's
// btrfs_map_block() (fs/btrfs/volumes.c): map_blocks_raid56_read() for the data unit, and the
// full-stripe mapping it builds for writes and rebuilds (member i of row r on chunk stripe
// (r + i) % num_stripes, i = data units then P then Q). btrfs-progs' __btrfs_map_block()
// (kernel-shared/volumes.c) computes the same rotation for its raid_map. Throws
// Error{unsupported} for other profiles, Error{not_found} when logical is outside the chunk,
// Error{internal} for an inconsistent chunk.
Raid56Place map_raid56(const Chunk& chunk, uint64_t logical);

// Parity arithmetic. Every span passed to one call has the same length; a "data" vector has one
// span per data unit in logical order. P is the xor of the data units; Q the RAID6 syndrome
// sum(g^j * D_j) over GF(2^8) with generator g = 2 and polynomial 0x11d, as the kernel's
// lib/raid6 and ISA-L's pq_gen compute it.
namespace raid56 {

// P (and Q) of `data`. Faster when every buffer is 32-byte aligned and the length a multiple
// of 32 (ISA-L's xor_gen/pq_gen); any layout works.
void gen_p(std::span<const std::span<const uint8_t>> data, std::span<uint8_t> p);
void gen_pq(std::span<const std::span<const uint8_t>> data, std::span<uint8_t> p,
            std::span<uint8_t> q);

// Whether stored P (Q) equal the parity of `data`.
bool p_matches(std::span<const std::span<const uint8_t>> data, std::span<const uint8_t> p);
bool q_matches(std::span<const std::span<const uint8_t>> data, std::span<const uint8_t> q);

// data[missing] rebuilt from the other data units and P (RAID5's only rebuild; RAID6's when Q
// is lost too). data[missing] itself is not read and may be empty.
void rebuild_from_p(std::span<const std::span<const uint8_t>> data, unsigned missing,
                    std::span<const uint8_t> p, std::span<uint8_t> out);
// data[missing] rebuilt from the other data units and Q (RAID6 when P is lost too).
void rebuild_from_q(std::span<const std::span<const uint8_t>> data, unsigned missing,
                    std::span<const uint8_t> q, std::span<uint8_t> out);
// data[a] and data[b] (a != b) rebuilt from the other data units, P and Q (RAID6).
void rebuild_two(std::span<const std::span<const uint8_t>> data, unsigned a, unsigned b,
                 std::span<const uint8_t> p, std::span<const uint8_t> q, std::span<uint8_t> out_a,
                 std::span<uint8_t> out_b);

} // namespace raid56
} // namespace vmcsum::btrfs
