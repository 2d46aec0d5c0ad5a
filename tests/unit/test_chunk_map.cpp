// SPDX-License-Identifier: GPL-2.0-or-later
#include "scrub/scrub_raid56.hpp"
#include <vmcsum/btrfs/chunk_map.hpp>
#include <vmcsum/error.hpp>

#include <doctest/doctest.h>

#include <linux/btrfs_tree.h>

#include <utility>
#include <vector>

using namespace vmcsum;
using btrfs::Copy;

namespace {
constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;
constexpr uint64_t GiB = 1024 * MiB;
constexpr uint64_t k_stripe_len = 64 * KiB;

void put_le(std::vector<uint8_t>& buf, size_t off, uint64_t v, int bytes)
{
  for (int i = 0; i < bytes; ++i) {
    buf[off + i] = static_cast<uint8_t>(v >> (8 * i));
  }
}

// A CHUNK_ITEM body laid out by hand from struct btrfs_chunk / btrfs_stripe (btrfs_tree.h):
// length@0 owner@8 stripe_len@16 type@24 io_align@32 io_width@36 sector_size@40
// num_stripes@44 sub_stripes@46, stripes from 48, each devid@0 offset@8 dev_uuid@16 (32 bytes).
std::vector<uint8_t> chunk_item(uint64_t length, uint64_t type, uint16_t sub_stripes,
                                const std::vector<std::pair<uint64_t, uint64_t>>& stripes)
{
  std::vector<uint8_t> b(48 + 32 * stripes.size(), 0);
  put_le(b, 0, length, 8);
  put_le(b, 8, 2, 8); // owner: the extent tree
  put_le(b, 16, k_stripe_len, 8);
  put_le(b, 24, type, 8);
  put_le(b, 32, 64 * KiB, 4);
  put_le(b, 36, 64 * KiB, 4);
  put_le(b, 40, 4096, 4);
  put_le(b, 44, stripes.size(), 2);
  put_le(b, 46, sub_stripes, 2);
  for (size_t i = 0; i < stripes.size(); ++i) {
    put_le(b, 48 + 32 * i, stripes[i].first, 8);
    put_le(b, 48 + 32 * i + 8, stripes[i].second, 8);
    for (size_t u = 0; u < 16; ++u) {
      b[48 + 32 * i + 16 + u] = static_cast<uint8_t>(0x10 * i + u);
    }
  }
  return b;
}

btrfs::Chunk make_chunk(uint64_t logical, uint64_t length, uint64_t type, uint16_t sub_stripes,
                        const std::vector<std::pair<uint64_t, uint64_t>>& stripes)
{
  auto c = btrfs::parse_chunk_item(logical, chunk_item(length, type, sub_stripes, stripes));
  REQUIRE(c);
  return *c;
}

struct Want
{
  unsigned mirror;
  uint64_t devid;
  uint64_t physical;
  uint64_t length;
};

void check_copies(const std::vector<Copy>& got, const std::vector<Want>& want)
{
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].mirror == want[i].mirror);
    CHECK(got[i].devid == want[i].devid);
    CHECK(got[i].physical == want[i].physical);
    CHECK(got[i].length == want[i].length);
  }
}

Errc error_of(const btrfs::Chunk& c, uint64_t logical)
{
  try {
    btrfs::map_logical(c, logical);
  } catch (const Error& e) {
    return e.code();
  }
  return Errc::internal;
}

constexpr uint64_t data = BTRFS_BLOCK_GROUP_DATA;
} // namespace

TEST_CASE("chunk item parses the on-disk layout")
{
  auto raw = chunk_item(1 * GiB, data | BTRFS_BLOCK_GROUP_RAID10, 2,
                        {{1, 22020096}, {2, 1 * MiB}, {3, 2 * MiB}, {4, 3 * MiB}});
  auto c = btrfs::parse_chunk_item(13631488, raw);
  REQUIRE(c);
  CHECK(c->logical == 13631488);
  CHECK(c->length == 1 * GiB);
  CHECK(c->stripe_len == 64 * KiB);
  CHECK(c->type == (data | BTRFS_BLOCK_GROUP_RAID10));
  CHECK(c->num_stripes == 4);
  CHECK(c->sub_stripes == 2);
  REQUIRE(c->stripes.size() == 4);
  CHECK(c->stripes[0].devid == 1);
  CHECK(c->stripes[0].offset == 22020096);
  CHECK(c->stripes[3].devid == 4);
  CHECK(c->stripes[3].offset == 3 * MiB);
  CHECK(c->stripes[1].dev_uuid[0] == 0x10);
  CHECK(c->stripes[1].dev_uuid[15] == 0x1f);

  SUBCASE("truncated items are rejected")
  {
    CHECK_FALSE(btrfs::parse_chunk_item(0, std::span(raw).first(47)));
    CHECK_FALSE(btrfs::parse_chunk_item(0, std::span(raw).first(raw.size() - 1)));
  }
  SUBCASE("an item without stripes is rejected")
  {
    auto none = chunk_item(1 * GiB, data, 1, {});
    CHECK_FALSE(btrfs::parse_chunk_item(0, none));
  }
}

TEST_CASE("single: one copy at stripe offset + chunk offset, contiguous to the chunk end")
{
  auto c = make_chunk(1 * GiB, 8 * MiB, data, 1, {{1, 20 * MiB}});
  check_copies(btrfs::map_logical(c, 1 * GiB), {{1, 1, 20 * MiB, 8 * MiB}});
  check_copies(btrfs::map_logical(c, 1 * GiB + 200 * KiB),
               {{1, 1, 20 * MiB + 200 * KiB, 8 * MiB - 200 * KiB}});
  check_copies(btrfs::map_logical(c, 1 * GiB + 8 * MiB - 4096), {{1, 1, 28 * MiB - 4096, 4096}});
}

TEST_CASE("dup: two copies on the same device, mirror N = stripe N-1")
{
  // Offsets seen on a real 256 MiB dup filesystem (docs/kernel-facts.md §3.5).
  auto c = make_chunk(84082688 - 4096, 64 * MiB, data | BTRFS_BLOCK_GROUP_DUP, 1,
                      {{1, 146145280 - 4096}, {1, 213254144 - 4096}});
  check_copies(btrfs::map_logical(c, 84082688),
               {{1, 1, 146145280, 64 * MiB - 4096}, {2, 1, 213254144, 64 * MiB - 4096}});
}

TEST_CASE("raid1, raid1c3, raid1c4: one copy per stripe, in stripe order")
{
  const uint64_t off = 3 * MiB + 12 * KiB;
  SUBCASE("raid1")
  {
    auto c = make_chunk(GiB, GiB, data | BTRFS_BLOCK_GROUP_RAID1, 1, {{2, 5 * MiB}, {1, 9 * MiB}});
    check_copies(btrfs::map_logical(c, GiB + off),
                 {{1, 2, 5 * MiB + off, GiB - off}, {2, 1, 9 * MiB + off, GiB - off}});
  }
  SUBCASE("raid1c3")
  {
    auto c = make_chunk(GiB, GiB, data | BTRFS_BLOCK_GROUP_RAID1C3, 1,
                        {{1, 1 * MiB}, {2, 2 * MiB}, {3, 3 * MiB}});
    check_copies(btrfs::map_logical(c, GiB + off), {{1, 1, 1 * MiB + off, GiB - off},
                                                    {2, 2, 2 * MiB + off, GiB - off},
                                                    {3, 3, 3 * MiB + off, GiB - off}});
  }
  SUBCASE("raid1c4")
  {
    auto c = make_chunk(GiB, GiB, data | BTRFS_BLOCK_GROUP_RAID1C4, 1,
                        {{4, 1 * MiB}, {3, 2 * MiB}, {2, 3 * MiB}, {1, 4 * MiB}});
    auto got = btrfs::map_logical(c, GiB + off);
    check_copies(got, {{1, 4, 1 * MiB + off, GiB - off},
                       {2, 3, 2 * MiB + off, GiB - off},
                       {3, 2, 3 * MiB + off, GiB - off},
                       {4, 1, 4 * MiB + off, GiB - off}});
  }
}

TEST_CASE("raid0: 64 KiB units round-robin over the stripes")
{
  const uint64_t A = 1 * MiB, B = 2 * MiB, C = 3 * MiB, L = 10 * GiB;
  auto c = make_chunk(L, 3 * 64 * MiB, data | BTRFS_BLOCK_GROUP_RAID0, 1, {{1, A}, {2, B}, {3, C}});
  const uint64_t S = k_stripe_len;
  // unit nr = off / 64K; stripe = nr % 3; row = nr / 3; physical = stripe + row * 64K + off % 64K
  check_copies(btrfs::map_logical(c, L), {{1, 1, A, S}});
  check_copies(btrfs::map_logical(c, L + S - 4096), {{1, 1, A + S - 4096, 4096}});
  check_copies(btrfs::map_logical(c, L + S + 4096), {{1, 2, B + 4096, S - 4096}});
  check_copies(btrfs::map_logical(c, L + 2 * S), {{1, 3, C, S}});
  check_copies(btrfs::map_logical(c, L + 3 * S + 8192), {{1, 1, A + S + 8192, S - 8192}});
  check_copies(btrfs::map_logical(c, L + 7 * S), {{1, 2, B + 2 * S, S}});
  check_copies(btrfs::map_logical(c, L + 3000 * S + 12288),
               {{1, 1, A + 1000 * S + 12288, S - 12288}});
  check_copies(btrfs::map_logical(c, L + 3001 * S), {{1, 2, B + 1000 * S, S}});

  SUBCASE("the last unit is clipped at the chunk end")
  {
    auto short_chunk = make_chunk(L, S + 8192, data | BTRFS_BLOCK_GROUP_RAID0, 1, {{1, A}, {2, B}});
    check_copies(btrfs::map_logical(short_chunk, L + S), {{1, 2, B, 8192}});
  }
}

TEST_CASE("raid10: units round-robin over mirror sets of sub_stripes stripes")
{
  const uint64_t L = 2 * GiB, S = k_stripe_len;
  SUBCASE("4 devices: 2 sets of 2")
  {
    auto c = make_chunk(L, 256 * MiB, data | BTRFS_BLOCK_GROUP_RAID10, 2,
                        {{1, 10 * MiB}, {2, 20 * MiB}, {3, 30 * MiB}, {4, 40 * MiB}});
    // set = nr % 2 -> stripes 2*set, 2*set+1; row = nr / 2
    check_copies(btrfs::map_logical(c, L), {{1, 1, 10 * MiB, S}, {2, 2, 20 * MiB, S}});
    check_copies(btrfs::map_logical(c, L + S + 4096),
                 {{1, 3, 30 * MiB + 4096, S - 4096}, {2, 4, 40 * MiB + 4096, S - 4096}});
    check_copies(btrfs::map_logical(c, L + 2 * S),
                 {{1, 1, 10 * MiB + S, S}, {2, 2, 20 * MiB + S, S}});
    check_copies(
      btrfs::map_logical(c, L + 5 * S + 12288),
      {{1, 3, 30 * MiB + 2 * S + 12288, S - 12288}, {2, 4, 40 * MiB + 2 * S + 12288, S - 12288}});
  }
  SUBCASE("6 devices: 3 sets of 2")
  {
    auto c = make_chunk(
      L, 384 * MiB, data | BTRFS_BLOCK_GROUP_RAID10, 2,
      {{1, 1 * MiB}, {2, 2 * MiB}, {3, 3 * MiB}, {4, 4 * MiB}, {5, 5 * MiB}, {6, 6 * MiB}});
    check_copies(btrfs::map_logical(c, L + 2 * S), {{1, 5, 5 * MiB, S}, {2, 6, 6 * MiB, S}});
    check_copies(btrfs::map_logical(c, L + 4 * S + 4096),
                 {{1, 3, 3 * MiB + S + 4096, S - 4096}, {2, 4, 4 * MiB + S + 4096, S - 4096}});
  }
  SUBCASE("a sub_stripes that does not divide num_stripes is an inconsistent chunk")
  {
    auto c = make_chunk(L, 256 * MiB, data | BTRFS_BLOCK_GROUP_RAID10, 0,
                        {{1, 1 * MiB}, {2, 2 * MiB}, {3, 3 * MiB}, {4, 4 * MiB}});
    CHECK(error_of(c, L) == Errc::internal);
  }
}

TEST_CASE("contiguous_length: one request per copy across stripe units that follow on")
{
  const uint64_t L = 2 * GiB, S = k_stripe_len;
  SUBCASE("raid10 over 2 devices: every unit on both, one after the other")
  {
    btrfs::ChunkMap m({make_chunk(L, 256 * MiB, data | BTRFS_BLOCK_GROUP_RAID10, 2,
                                  {{1, 10 * MiB}, {2, 20 * MiB}})});
    CHECK(core::contiguous_length(m, L, 4 * MiB) == 4 * MiB);
    CHECK(core::contiguous_length(m, L + 4096, 3 * S) == 3 * S);
    // ...up to the chunk's end, not into the next chunk.
    CHECK(core::contiguous_length(m, L + 256 * MiB - S - 4096, 4 * MiB) == S + 4096);
  }
  SUBCASE("raid10 over 4 devices: the next unit is on the other pair")
  {
    btrfs::ChunkMap m({make_chunk(L, 256 * MiB, data | BTRFS_BLOCK_GROUP_RAID10, 2,
                                  {{1, 10 * MiB}, {2, 20 * MiB}, {3, 30 * MiB}, {4, 40 * MiB}})});
    CHECK(core::contiguous_length(m, L, 4 * MiB) == S);
    CHECK(core::contiguous_length(m, L + S + 4096, 4 * MiB) == S - 4096);
    CHECK(core::contiguous_length(m, L, 8192) == 8192); // never more than asked
  }
  SUBCASE("raid1 and dup: to the chunk's end")
  {
    btrfs::ChunkMap m(
      {make_chunk(L, 64 * MiB, data | BTRFS_BLOCK_GROUP_RAID1, 1, {{1, 10 * MiB}, {2, 20 * MiB}}),
       make_chunk(L + 64 * MiB, 64 * MiB, data | BTRFS_BLOCK_GROUP_DUP, 1,
                  {{1, 100 * MiB}, {1, 200 * MiB}})});
    CHECK(core::contiguous_length(m, L + 60 * MiB, 8 * MiB) == 4 * MiB);
    CHECK(core::contiguous_length(m, L + 64 * MiB, 8 * MiB) == 8 * MiB);
  }
  SUBCASE("raid5: one data unit at a time")
  {
    btrfs::ChunkMap m({make_chunk(L, 128 * MiB, data | BTRFS_BLOCK_GROUP_RAID5, 1,
                                  {{1, MiB}, {2, MiB}, {3, MiB}})});
    CHECK(core::contiguous_length(m, L + 4096, 4 * MiB) == S - 4096);
  }
}

TEST_CASE("raid5/6, mixed profile bits and addresses outside the chunk are errors")
{
  const uint64_t L = GiB;
  auto r5 =
    make_chunk(L, 128 * MiB, data | BTRFS_BLOCK_GROUP_RAID5, 1, {{1, MiB}, {2, MiB}, {3, MiB}});
  CHECK(error_of(r5, L) == Errc::unsupported);
  auto r6 = make_chunk(L, 128 * MiB, data | BTRFS_BLOCK_GROUP_RAID6, 1,
                       {{1, MiB}, {2, MiB}, {3, MiB}, {4, MiB}});
  CHECK(error_of(r6, L) == Errc::unsupported);
  auto mixed = make_chunk(L, 128 * MiB, data | BTRFS_BLOCK_GROUP_RAID1 | BTRFS_BLOCK_GROUP_DUP, 1,
                          {{1, MiB}, {2, MiB}});
  CHECK(error_of(mixed, L) == Errc::unsupported);
  auto single = make_chunk(L, 128 * MiB, data, 1, {{1, MiB}});
  CHECK(error_of(single, L - 4096) == Errc::not_found);
  CHECK(error_of(single, L + 128 * MiB) == Errc::not_found);
  auto two = make_chunk(L, 128 * MiB, data, 1, {{1, MiB}, {2, MiB}});
  CHECK(error_of(two, L) == Errc::internal);
}

TEST_CASE("ChunkMap finds the chunk containing an address")
{
  std::vector<btrfs::Chunk> chunks;
  chunks.push_back(make_chunk(3 * GiB, GiB, data, 1, {{1, 5 * GiB}}));
  chunks.push_back(make_chunk(22020096, 8 * MiB, BTRFS_BLOCK_GROUP_SYSTEM | BTRFS_BLOCK_GROUP_DUP,
                              1, {{1, 1 * MiB}, {1, 9 * MiB}}));
  chunks.push_back(make_chunk(GiB, GiB, data | BTRFS_BLOCK_GROUP_RAID1, 1, {{1, MiB}, {2, MiB}}));
  btrfs::ChunkMap map(std::move(chunks));
  REQUIRE(map.chunks().size() == 3);
  CHECK(map.chunks().front().logical == 22020096); // sorted

  CHECK(map.find(0) == nullptr);
  CHECK(map.find(22020096 + 8 * MiB) == nullptr); // gap between chunks
  REQUIRE(map.find(22020096 + 4096));
  CHECK(map.find(22020096 + 4096)->logical == 22020096);
  CHECK(map.find(2 * GiB - 1)->logical == GiB);
  CHECK(map.find(2 * GiB) == nullptr);
  CHECK(map.find(4 * GiB - 1)->logical == 3 * GiB);
  CHECK(map.find(4 * GiB) == nullptr);

  CHECK(map.map(GiB + 4096).size() == 2);
  check_copies(map.map(3 * GiB + 8192), {{1, 1, 5 * GiB + 8192, GiB - 8192}});
  try {
    map.map(2 * GiB);
    FAIL("no exception");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::not_found);
  }
}

TEST_CASE("device_paths maps devids to the kernel's device paths")
{
  std::vector<btrfs::DevInfo> devs{{1, "/dev/loop3", 0, 0}, {3, "/dev/loop7", 0, 0}};
  auto paths = btrfs::device_paths(devs);
  CHECK(paths.size() == 2);
  CHECK(paths[1] == "/dev/loop3");
  CHECK(paths[3] == "/dev/loop7");
  CHECK(paths.count(2) == 0);
}
