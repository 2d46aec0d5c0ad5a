// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/chunk_map.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

#include <linux/btrfs_tree.h>

namespace vmcsum::btrfs {

namespace {

// The parser reads fixed offsets; the uapi header's packed structs are the authority for them.
constexpr size_t k_chunk_header = offsetof(btrfs_chunk, stripe);
constexpr size_t k_stripe_size = sizeof(btrfs_stripe);
static_assert(offsetof(btrfs_chunk, length) == 0);
static_assert(offsetof(btrfs_chunk, stripe_len) == 16);
static_assert(offsetof(btrfs_chunk, type) == 24);
static_assert(offsetof(btrfs_chunk, num_stripes) == 44);
static_assert(offsetof(btrfs_chunk, sub_stripes) == 46);
static_assert(k_chunk_header == 48);
static_assert(offsetof(btrfs_stripe, devid) == 0);
static_assert(offsetof(btrfs_stripe, offset) == 8);
static_assert(offsetof(btrfs_stripe, dev_uuid) == 16);
static_assert(k_stripe_size == 32);

[[noreturn]] void bad_chunk(const Chunk& c, const std::string& why)
{
  throw Error(Errc::internal, "chunk at logical " + std::to_string(c.logical) + ": " + why);
}

} // namespace

std::optional<Chunk> parse_chunk_item(uint64_t logical, std::span<const uint8_t> data)
{
  if (data.size() < k_chunk_header) {
    return std::nullopt;
  }
  const uint8_t* p = data.data();
  Chunk c;
  c.logical = logical;
  c.length = le64(p + offsetof(btrfs_chunk, length));
  c.stripe_len = le64(p + offsetof(btrfs_chunk, stripe_len));
  c.type = le64(p + offsetof(btrfs_chunk, type));
  c.num_stripes = le16(p + offsetof(btrfs_chunk, num_stripes));
  c.sub_stripes = le16(p + offsetof(btrfs_chunk, sub_stripes));
  // btrfs_chunk_item_size(): the header, then num_stripes stripes (the first is inside
  // struct btrfs_chunk itself).
  if (c.num_stripes == 0 || data.size() < k_chunk_header + c.num_stripes * k_stripe_size) {
    return std::nullopt;
  }
  c.stripes.reserve(c.num_stripes);
  for (size_t i = 0; i < c.num_stripes; ++i) {
    const uint8_t* s = p + k_chunk_header + i * k_stripe_size;
    Stripe st;
    st.devid = le64(s + offsetof(btrfs_stripe, devid));
    st.offset = le64(s + offsetof(btrfs_stripe, offset));
    std::memcpy(st.dev_uuid.data(), s + offsetof(btrfs_stripe, dev_uuid), st.dev_uuid.size());
    c.stripes.push_back(st);
  }
  return c;
}

std::vector<Copy> map_logical(const Chunk& c, uint64_t logical)
{
  if (logical < c.logical || logical - c.logical >= c.length) {
    throw Error(Errc::not_found, "logical " + std::to_string(logical) + " is not in the chunk at " +
                                   std::to_string(c.logical));
  }
  if (c.stripes.size() != c.num_stripes || c.num_stripes == 0) {
    bad_chunk(c, "stripe count mismatch");
  }
  const uint64_t profile = c.type & BTRFS_BLOCK_GROUP_PROFILE_MASK;
  const uint64_t offset = logical - c.logical;
  const uint64_t to_chunk_end = c.length - offset;
  std::vector<Copy> out;

  // DUP, RAID1, RAID1C3, RAID1C4 and SINGLE keep each stripe as one contiguous copy of the whole
  // chunk, so stripe_nr * stripe_len + stripe_offset in btrfs_map_block() is just `offset`;
  // mirror N reads stripe N-1 (map_blocks_raid1(), map_blocks_dup()).
  if (profile == 0 || profile == BTRFS_BLOCK_GROUP_DUP || profile == BTRFS_BLOCK_GROUP_RAID1 ||
      profile == BTRFS_BLOCK_GROUP_RAID1C3 || profile == BTRFS_BLOCK_GROUP_RAID1C4) {
    // The tree-checker (btrfs_check_chunk_valid()) allows SINGLE only with one stripe.
    if (profile == 0 && c.num_stripes != 1) {
      bad_chunk(c, "SINGLE with " + std::to_string(c.num_stripes) + " stripes");
    }
    for (size_t i = 0; i < c.num_stripes; ++i) {
      out.push_back({static_cast<unsigned>(i + 1), c.stripes[i].devid, c.stripes[i].offset + offset,
                     to_chunk_end});
    }
    return out;
  }
  if (profile == BTRFS_BLOCK_GROUP_RAID0 || profile == BTRFS_BLOCK_GROUP_RAID10) {
    // Both stripe the chunk in stripe_len units round-robin over the devices (or over mirror
    // sets for RAID10); the tree-checker requires stripe_len == BTRFS_STRIPE_LEN (64 KiB).
    if (c.stripe_len == 0) {
      bad_chunk(c, "stripe_len is 0");
    }
    const uint64_t stripe_nr = offset / c.stripe_len;
    const uint64_t stripe_offset = offset % c.stripe_len;
    const uint64_t len = std::min(c.stripe_len - stripe_offset, to_chunk_end);
    if (profile == BTRFS_BLOCK_GROUP_RAID0) {
      // map_blocks_raid0(): stripe_index = stripe_nr % num_stripes; nr of units on that device
      // before ours = stripe_nr / num_stripes. One copy, read as mirror 1.
      const uint64_t index = stripe_nr % c.num_stripes;
      const uint64_t row = stripe_nr / c.num_stripes;
      const Stripe& s = c.stripes[index];
      out.push_back({1, s.devid, s.offset + row * c.stripe_len + stripe_offset, len});
      return out;
    }
    // map_blocks_raid10(): factor = num_stripes / sub_stripes mirror sets; the unit goes to set
    // stripe_nr % factor, whose sub_stripes consecutive stripes hold the copies (mirror N reads
    // the set's stripe N-1).
    if (c.sub_stripes == 0 || c.num_stripes % c.sub_stripes != 0) {
      bad_chunk(c, "RAID10 with num_stripes " + std::to_string(c.num_stripes) +
                     " and sub_stripes " + std::to_string(c.sub_stripes));
    }
    const uint64_t factor = c.num_stripes / c.sub_stripes;
    const uint64_t first = (stripe_nr % factor) * c.sub_stripes;
    const uint64_t row = stripe_nr / factor;
    for (unsigned m = 0; m < c.sub_stripes; ++m) {
      const Stripe& s = c.stripes[first + m];
      out.push_back({m + 1, s.devid, s.offset + row * c.stripe_len + stripe_offset, len});
    }
    return out;
  }
  if (profile == BTRFS_BLOCK_GROUP_RAID5 || profile == BTRFS_BLOCK_GROUP_RAID6) {
    // Data is spread over rotating data stripes with parity; the "other copies" are
    // reconstructions, not bytes that can be read and checksummed on their own. map_raid56()
    // (raid56.hpp) maps these chunks for a caller that knows it.
    throw Error(Errc::unsupported,
                "RAID5/6 chunks are not supported (logical " + std::to_string(logical) + ")");
  }
  throw Error(Errc::unsupported, "chunk at logical " + std::to_string(c.logical) +
                                   " has unknown profile bits " + std::to_string(profile));
}

ChunkMap::ChunkMap(std::vector<Chunk> chunks)
  : m_chunks(std::move(chunks))
{
  std::sort(m_chunks.begin(), m_chunks.end(),
            [](const Chunk& a, const Chunk& b) { return a.logical < b.logical; });
}

ChunkMap ChunkMap::read(int fd, const std::string& path)
{
  // Chunk items: key (BTRFS_FIRST_CHUNK_TREE_OBJECTID, BTRFS_CHUNK_ITEM_KEY, logical start) in
  // the chunk tree. The tree also holds DEV_ITEMs (objectid 1), excluded by the key range.
  SearchRange range;
  range.tree_id = BTRFS_CHUNK_TREE_OBJECTID;
  range.min = {BTRFS_FIRST_CHUNK_TREE_OBJECTID, BTRFS_CHUNK_ITEM_KEY, 0};
  range.max = {BTRFS_FIRST_CHUNK_TREE_OBJECTID, BTRFS_CHUNK_ITEM_KEY, ~0ULL};
  std::vector<Chunk> chunks;
  tree_search(
    fd, range,
    [&](const Key& key, std::span<const uint8_t> data) {
      if (key.objectid != BTRFS_FIRST_CHUNK_TREE_OBJECTID || key.type != BTRFS_CHUNK_ITEM_KEY) {
        return true;
      }
      auto chunk = parse_chunk_item(key.offset, data);
      if (!chunk) {
        throw Error(Errc::internal, "malformed chunk item at logical " + std::to_string(key.offset),
                    path);
      }
      chunks.push_back(std::move(*chunk));
      return true;
    },
    path);
  return ChunkMap(std::move(chunks));
}

const Chunk* ChunkMap::find(uint64_t logical) const
{
  // The last chunk starting at or before logical is the only candidate (chunks never overlap).
  auto it = std::upper_bound(m_chunks.begin(), m_chunks.end(), logical,
                             [](uint64_t l, const Chunk& c) { return l < c.logical; });
  if (it == m_chunks.begin()) {
    return nullptr;
  }
  --it;
  return logical - it->logical < it->length ? &*it : nullptr;
}

std::vector<Copy> ChunkMap::map(uint64_t logical) const
{
  const Chunk* c = find(logical);
  if (!c) {
    throw Error(Errc::not_found, "no chunk maps logical " + std::to_string(logical));
  }
  return map_logical(*c, logical);
}

std::map<uint64_t, std::string> device_paths(const std::vector<DevInfo>& devs)
{
  std::map<uint64_t, std::string> out;
  for (const auto& d : devs) {
    out[d.devid] = d.path;
  }
  return out;
}

std::map<uint64_t, std::string> device_paths(int fd, const std::string& path)
{
  return device_paths(dev_infos(fd, fs_info(fd, path), path));
}

} // namespace vmcsum::btrfs
