// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// btrfs logical address -> every device copy, from the chunk tree (docs/kernel-facts.md §3.5).
#pragma once

#include <vmcsum/btrfs/ioctl.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vmcsum::btrfs {

// struct btrfs_stripe (btrfs_tree.h).
struct Stripe
{
  uint64_t devid = 0;
  uint64_t offset = 0; // physical byte offset of the stripe's start on that device
  std::array<uint8_t, 16> dev_uuid{};
};

// struct btrfs_chunk plus its key offset: the chunk maps [logical, logical + length).
struct Chunk
{
  uint64_t logical = 0;
  uint64_t length = 0;
  uint64_t stripe_len = 0; // the RAID0/RAID10 stripe unit; always 64 KiB (BTRFS_STRIPE_LEN)
  uint64_t type = 0;       // BTRFS_BLOCK_GROUP_* type and profile bits
  uint16_t num_stripes = 0;
  uint16_t sub_stripes = 0; // copies per RAID10 stripe set
  std::vector<Stripe> stripes;
};

// Parses a CHUNK_ITEM body (little-endian, packed; 48 bytes + 32 per stripe). nullopt when the
// item is shorter than num_stripes needs or has no stripe.
std::optional<Chunk> parse_chunk_item(uint64_t logical, std::span<const uint8_t> data);

// One copy of a logical address on one device.
struct Copy
{
  unsigned mirror = 0; // 1-based, the kernel's mirror_num for reads of this address
  uint64_t devid = 0;
  uint64_t physical = 0; // byte offset on the device
  uint64_t length = 0;   // bytes contiguous from `physical` on this device: to the end of the
                         // stripe unit (RAID0/RAID10) or of the chunk (the other profiles)
};

// Every copy of `logical` in mirror order, with the arithmetic of the kernel's
// btrfs_map_block() (fs/btrfs/volumes.c: map_blocks_raid0/raid1/dup/raid10/single). Throws
// Error{unsupported} for RAID5/6 (parity, not copies) and unknown profile bits, Error{not_found}
// when logical is outside the chunk, Error{internal} for an inconsistent chunk.
std::vector<Copy> map_logical(const Chunk& chunk, uint64_t logical);

// The chunk tree of a mounted filesystem, read once. It changes only when chunks are allocated,
// removed or relocated (balance, device remove/replace), so long runs re-read it after those.
// Does not know the zoned RAID stripe tree or the 7.0 remap tree, which add another layer.
class ChunkMap
{
public:
  explicit ChunkMap(std::vector<Chunk> chunks);

  // Reads every CHUNK_ITEM of tree 3 with TREE_SEARCH_V2 (needs CAP_SYS_ADMIN; throws
  // Error{permission} otherwise).
  static ChunkMap read(int fd, const std::string& path);

  // The chunk containing logical, or nullptr.
  const Chunk* find(uint64_t logical) const;
  // map_logical() on the chunk containing logical; throws Error{not_found} when none does.
  std::vector<Copy> map(uint64_t logical) const;
  const std::vector<Chunk>& chunks() const { return m_chunks; }

private:
  std::vector<Chunk> m_chunks; // sorted by logical
};

// devid -> device path as the kernel knows it (BTRFS_IOC_DEV_INFO). A missing device has an
// empty path.
std::map<uint64_t, std::string> device_paths(const std::vector<DevInfo>& devs);
// Same, asking the kernel (no privilege needed).
std::map<uint64_t, std::string> device_paths(int fd, const std::string& path);

} // namespace vmcsum::btrfs
