// SPDX-License-Identifier: GPL-2.0-or-later
// libFuzzer target: the btrfs item decoders fed by TREE_SEARCH_V2 (chunk items and the logical
// -> device mapping built on them, inode items, file extent items). The first byte picks the
// decoder, the next 8 the key offset, the rest is the item body.
#include <vmcsum/btrfs/chunk_map.hpp>
#include <vmcsum/btrfs/file_extents.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace {

using namespace vmcsum::btrfs;

// Every copy must lie in the chunk's stripes and be numbered 1, 2, ... in order.
void check_copies(const Chunk& c, uint64_t logical)
{
  std::vector<Copy> copies;
  try {
    copies = map_logical(c, logical);
  } catch (const vmcsum::Error&) {
    return; // unsupported profile, outside the chunk, inconsistent chunk: all reported
  }
  if (copies.empty() || copies.size() > c.num_stripes) {
    __builtin_trap();
  }
  for (size_t i = 0; i < copies.size(); ++i) {
    if (copies[i].mirror != i + 1 || copies[i].length == 0) {
      __builtin_trap();
    }
  }
}

void chunk(uint64_t logical, std::span<const uint8_t> body, uint64_t probe)
{
  auto c = parse_chunk_item(logical, body);
  if (!c) {
    return;
  }
  if (c->stripes.size() != c->num_stripes || c->num_stripes == 0) {
    __builtin_trap();
  }
  check_copies(*c, c->logical);
  check_copies(*c, c->logical + probe);
  if (c->length != 0) {
    check_copies(*c, c->logical + c->length - 1);
  }
  ChunkMap map({*c});
  if (const Chunk* found = map.find(c->logical + probe);
      found && c->logical + probe - found->logical >= found->length) {
    __builtin_trap();
  }
}

void inode(std::span<const uint8_t> body)
{
  if (auto item = parse_inode_item(body)) {
    if (body.size() < 160) {
      __builtin_trap();
    }
    (void)inode_flag_names(item->flags);
  }
}

void file_extent(uint64_t offset, std::span<const uint8_t> body)
{
  try {
    FileExtent e = decode_file_extent(offset, body);
    (void)e.hole();
    (void)e.logical_of(offset);
  } catch (const vmcsum::Error&) {
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  if (size < 9) {
    return 0;
  }
  const uint8_t which = data[0];
  const uint64_t key_offset = le64(data + 1);
  std::span<const uint8_t> body(data + 9, size - 9);
  switch (which % 3) {
  case 0:
    // The probe offset into the chunk comes from the key too, so one input covers the start,
    // the end and one arbitrary address.
    chunk(key_offset & 0xffffffffffff0000ULL, body, key_offset & 0xffffULL);
    break;
  case 1:
    inode(body);
    break;
  default:
    file_extent(key_offset, body);
    break;
  }
  return 0;
}
