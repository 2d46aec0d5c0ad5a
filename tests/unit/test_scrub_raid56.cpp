// SPDX-License-Identifier: GPL-2.0-or-later
// Scrub's RAID5/6 parts (src/scrub/scrub_raid56.cpp) over devices held in memory: the layout and
// the parity are written here by hand (row 0: data units on devids 1.., P, Q after them; row 1
// rotated by one device, as btrfs_map_block() places them; P by plain xor, Q with GF(2^8)
// multiplication done bit by bit), not with the code under test.
#include "scrub/scrub_raid56.hpp"

#include <vmcsum/checksum.hpp>

#include <doctest/doctest.h>

#include <linux/btrfs_tree.h>

#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

using namespace vmcsum;
using core::ParityMismatch;

namespace {
constexpr uint64_t k_unit = 64 * 1024;
constexpr uint64_t k_per_dev = 4 * k_unit; // four rows
constexpr uint64_t L = 1ull << 30;
constexpr uint32_t k_ss = 4096;

uint8_t gmul(uint8_t a, uint8_t b)
{
  uint8_t r = 0;
  for (; b; b >>= 1) {
    if (b & 1) {
      r ^= a;
    }
    a = static_cast<uint8_t>((a << 1) ^ ((a & 0x80) ? 0x1d : 0));
  }
  return r;
}

// n devices of k_per_dev bytes (devid i+1 = stripe i at offset 0), random data, parity by hand.
struct Array
{
  btrfs::Chunk chunk;
  std::map<uint64_t, std::vector<uint8_t>> dev;
  unsigned ndata = 0, np = 0;

  Array(uint64_t profile, uint16_t n)
  {
    np = profile == BTRFS_BLOCK_GROUP_RAID6 ? 2 : 1;
    ndata = n - np;
    chunk.logical = L;
    chunk.stripe_len = k_unit;
    chunk.type = BTRFS_BLOCK_GROUP_DATA | profile;
    chunk.num_stripes = n;
    chunk.sub_stripes = 1;
    chunk.length = ndata * k_per_dev;
    std::mt19937 rng(7);
    for (uint16_t i = 0; i < n; ++i) {
      chunk.stripes.push_back({static_cast<uint64_t>(i + 1), 0, {}});
      auto& d = dev[i + 1];
      d.resize(k_per_dev);
      for (auto& b : d) {
        b = static_cast<uint8_t>(rng());
      }
    }
    for (uint64_t row = 0; row < k_per_dev / k_unit; ++row) {
      for (uint64_t off = 0; off < k_unit; ++off) {
        uint8_t p = 0, q = 0, g = 1;
        for (unsigned j = 0; j < ndata; ++j) {
          const uint8_t v = at(row, j)[off];
          p ^= v;
          q ^= gmul(g, v);
          g = gmul(g, 2);
        }
        at(row, ndata)[off] = p;
        if (np == 2) {
          at(row, ndata + 1)[off] = q;
        }
      }
    }
  }
  // Member i (data units, P, Q) of a row: on stripe (row + i) % n.
  uint64_t devid(uint64_t row, unsigned i) const { return (row + i) % chunk.num_stripes + 1; }
  uint8_t* at(uint64_t row, unsigned i) { return dev[devid(row, i)].data() + row * k_unit; }
  uint64_t logical(uint64_t row, unsigned j, uint64_t off) const
  {
    return L + (row * ndata + j) * k_unit + off;
  }

  std::vector<uint8_t> csum_of(const uint8_t* sector) const
  {
    Checksummer sum(BTRFS_CSUM_TYPE_CRC32);
    return sum.compute({sector, k_ss});
  }

  std::set<uint64_t> missing;
  core::DeviceRead reader()
  {
    return [this](uint64_t id, uint64_t physical, uint8_t* out, size_t len) {
      if (missing.count(id) || physical + len > k_per_dev) {
        return false;
      }
      std::memcpy(out, dev[id].data() + physical, len);
      return true;
    };
  }

  std::vector<core::RebuiltCopy> rebuilt(uint64_t logical, const std::vector<uint8_t>& expected)
  {
    Checksummer sum(BTRFS_CSUM_TYPE_CRC32);
    return core::rebuilt_copies(chunk, logical, k_ss, reader(), sum, expected, {}, 2);
  }
};

std::string kinds(const std::vector<core::RebuiltCopy>& v)
{
  std::string s;
  for (const auto& r : v) {
    s += (s.empty() ? "" : " ") + r.copy.rebuilt + ":" + (r.copy.matches ? "ok" : "bad");
  }
  return s;
}

} // namespace

TEST_CASE("scrub raid56: the device copy is the data unit, to the end of its unit")
{
  Array a(BTRFS_BLOCK_GROUP_RAID5, 3);
  btrfs::ChunkMap m({a.chunk});
  auto c = core::device_copies(m, a.logical(1, 0, 8192));
  REQUIRE(c.size() == 1);
  CHECK(c[0].mirror == 1);
  CHECK(c[0].devid == 2); // row 1 is rotated by one device
  CHECK(c[0].physical == k_unit + 8192);
  CHECK(c[0].length == k_unit - 8192);
  CHECK(core::full_stripe_of(m, a.logical(1, 1, 4096)) == a.logical(1, 0, 0));
}

TEST_CASE("scrub raid56: RAID5: a damaged data sector is rebuilt from P")
{
  Array a(BTRFS_BLOCK_GROUP_RAID5, 3);
  uint8_t* s = a.at(1, 1) + 12288;
  const auto expected = a.csum_of(s);
  s[5] ^= 0xff;
  auto r = a.rebuilt(a.logical(1, 1, 12288), expected);
  CHECK(kinds(r) == "from-p:ok");
  CHECK(r[0].copy.mirror == 2);
  CHECK(r[0].copy.devid == a.devid(1, 2)); // P of row 1
  CHECK(r[0].copy.physical == k_unit + 12288);
  CHECK(r[0].copy.csum == to_hex(expected));
  // With P also damaged, the rebuild is a second wrong version: the race's signature.
  a.at(1, 2)[12288] ^= 1;
  CHECK(kinds(a.rebuilt(a.logical(1, 1, 12288), expected)) == "from-p:bad");
}

TEST_CASE("scrub raid56: RAID6: P, Q and P+Q rebuilds, two lost units of a row")
{
  Array a(BTRFS_BLOCK_GROUP_RAID6, 4);
  uint8_t* d0 = a.at(2, 0) + 4096;
  uint8_t* d1 = a.at(2, 1) + 4096;
  const auto e0 = a.csum_of(d0), e1 = a.csum_of(d1);
  d0[0] ^= 0x5a;
  CHECK(kinds(a.rebuilt(a.logical(2, 0, 4096), e0)) == "from-p:ok from-q:ok from-p-q:ok");
  d1[100] ^= 0xa5;
  CHECK(kinds(a.rebuilt(a.logical(2, 0, 4096), e0)) == "from-p:bad from-q:bad from-p-q:ok");
  CHECK(kinds(a.rebuilt(a.logical(2, 1, 4096), e1)) == "from-p:bad from-q:bad from-p-q:ok");
}

TEST_CASE("scrub raid56: a member that cannot be read: that rebuild is a read error")
{
  Array a(BTRFS_BLOCK_GROUP_RAID6, 4);
  const auto e = a.csum_of(a.at(0, 0));
  a.missing.insert(a.devid(0, 2)); // P of row 0
  auto r = a.rebuilt(a.logical(0, 0, 0), e);
  REQUIRE(r.size() == 3);
  CHECK(r[0].copy.read_error);
  CHECK(r[1].copy.matches);
  CHECK(r[2].copy.read_error);
}

TEST_CASE("scrub raid56: parity check of a full stripe")
{
  Array a(BTRFS_BLOCK_GROUP_RAID6, 4);
  core::FileScrub f;
  core::check_full_stripe(a.chunk, a.logical(3, 0, 0), k_ss, a.reader(), {}, {}, f);
  CHECK(f.parity_checked_stripes == 1);
  CHECK(f.parity.empty());

  SUBCASE("stale P")
  {
    a.at(3, 2)[8192 + 7] ^= 1;
    core::check_full_stripe(a.chunk, a.logical(3, 0, 0), k_ss, a.reader(), {}, {}, f);
    REQUIRE(f.parity.size() == 1);
    const ParityMismatch& m = f.parity[0];
    CHECK(m.parity == "p");
    CHECK(m.devid == a.devid(3, 2));
    CHECK(m.physical == 3 * k_unit);
    CHECK(m.sectors == 1);
    CHECK(m.first_offset == 8192);
    CHECK(m.stale_sectors == 1);
  }
  SUBCASE("a bad data sector explains P and Q of its row")
  {
    a.at(3, 1)[20000] ^= 1;
    const uint64_t bad = a.logical(3, 1, 20000 / k_ss * k_ss);
    core::check_full_stripe(a.chunk, a.logical(3, 0, 0), k_ss, a.reader(), {}, {bad}, f);
    REQUIRE(f.parity.size() == 2);
    CHECK(f.parity[0].parity == "p");
    CHECK(f.parity[1].parity == "q");
    CHECK(f.parity[0].stale_sectors == 0);
    CHECK(f.parity[1].stale_sectors == 0);
    CHECK(f.parity[1].first_offset == 16384);
  }
  SUBCASE("a member missing: not checked, a note")
  {
    a.missing.insert(a.devid(3, 1));
    core::check_full_stripe(a.chunk, a.logical(3, 0, 0), k_ss, a.reader(), {}, {}, f);
    CHECK(f.parity_checked_stripes == 1);
    CHECK(f.notes.size() == 1);
  }
}

TEST_CASE("scrub raid56: consecutive full stripes read together")
{
  Array a(BTRFS_BLOCK_GROUP_RAID5, 3);
  a.at(2, 2)[4096] ^= 1; // P of row 2
  core::FileScrub f;
  core::check_full_stripes(a.chunk, a.logical(0, 0, 0), 4, k_ss, a.reader(), {}, {}, f);
  CHECK(f.parity_checked_stripes == 4);
  REQUIRE(f.parity.size() == 1);
  CHECK(f.parity[0].logical == a.logical(2, 0, 0));
  CHECK(f.parity[0].devid == a.devid(2, 2));
  CHECK(f.parity[0].physical == 2 * k_unit);
  CHECK(f.parity[0].first_offset == 4096);

  SUBCASE("a device missing: row by row, none checked, one note")
  {
    core::FileScrub g;
    a.missing.insert(1);
    core::check_full_stripes(a.chunk, a.logical(0, 0, 0), 4, k_ss, a.reader(), {}, {}, g);
    CHECK(g.parity_checked_stripes == 0);
    CHECK(g.notes.size() == 1);
  }
}
