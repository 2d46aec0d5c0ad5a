// SPDX-License-Identifier: GPL-2.0-or-later
// RAID5/6 mapping against layouts computed by hand from btrfs_map_block()'s rules, and the
// parity arithmetic against independent computations (plain xor; GF(2^8) multiplication done
// bit by bit here, not with ISA-L's tables).
#include <vmcsum/btrfs/raid56.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>

#include <doctest/doctest.h>

#include <linux/btrfs_tree.h>

#include <cstring>
#include <random>
#include <set>
#include <span>
#include <utility>
#include <vector>

using namespace vmcsum;
using btrfs::StripeUnit;
namespace raid56 = btrfs::raid56;

namespace {
constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;
constexpr uint64_t GiB = 1024 * MiB;
constexpr uint64_t k_unit = 64 * KiB;
constexpr uint64_t L = GiB; // every test chunk starts here

// A RAID5/6 data chunk whose stripe i sits on devid i+1 at (i+1) * 10 MiB, `per_dev` bytes of
// each device: length = data units * per_dev, as btrfs_create_chunk() sizes it.
btrfs::Chunk chunk(uint64_t profile, uint16_t devices, uint64_t per_dev = 64 * MiB)
{
  btrfs::Chunk c;
  c.logical = L;
  c.stripe_len = k_unit;
  c.type = BTRFS_BLOCK_GROUP_DATA | profile;
  c.num_stripes = devices;
  c.sub_stripes = 1;
  const unsigned parity = profile == BTRFS_BLOCK_GROUP_RAID6 ? 2 : 1;
  c.length = (devices - parity) * per_dev;
  for (uint16_t i = 0; i < devices; ++i) {
    c.stripes.push_back({static_cast<uint64_t>(i + 1), (i + 1) * 10 * MiB, {}});
  }
  return c;
}

StripeUnit unit(uint64_t devid, uint64_t row)
{
  return {devid, devid * 10 * MiB + row * k_unit};
}

Errc error_of(const btrfs::Chunk& c, uint64_t logical)
{
  try {
    (void)btrfs::map_raid56(c, logical);
  } catch (const Error& e) {
    return e.code();
  }
  FAIL("no error");
  return Errc::internal;
}

// GF(2^8) with polynomial x^8+x^4+x^3+x^2+1 (0x11d), bit by bit.
uint8_t gmul(uint8_t a, uint8_t b)
{
  unsigned r = 0;
  unsigned x = a;
  for (; b; b >>= 1) {
    if (b & 1) {
      r ^= x;
    }
    x <<= 1;
    if (x & 0x100) {
      x ^= 0x11d;
    }
  }
  return static_cast<uint8_t>(r);
}

struct Stripe
{
  std::vector<std::vector<uint8_t>> data;
  std::vector<uint8_t> p, q; // the reference parity, computed here
  std::vector<std::span<const uint8_t>> views() const { return {data.begin(), data.end()}; }
};

Stripe random_stripe(unsigned ndata, size_t len, unsigned seed)
{
  std::mt19937 rng(seed);
  Stripe s;
  s.data.assign(ndata, std::vector<uint8_t>(len));
  for (auto& d : s.data) {
    for (auto& b : d) {
      b = static_cast<uint8_t>(rng());
    }
  }
  s.p.assign(len, 0);
  s.q.assign(len, 0);
  for (unsigned j = 0; j < ndata; ++j) {
    uint8_t g = 1; // 2^j
    for (unsigned e = 0; e < j; ++e) {
      g = gmul(g, 2);
    }
    for (size_t i = 0; i < len; ++i) {
      s.p[i] ^= s.data[j][i];
      s.q[i] ^= gmul(g, s.data[j][i]);
    }
  }
  return s;
}

} // namespace

TEST_CASE("raid5 on 3 devices: 2 data units per row, P rotates one device per row")
{
  const auto c = chunk(BTRFS_BLOCK_GROUP_RAID5, 3);
  CHECK(btrfs::parity_stripes(c) == 1);
  // Row 0: data on stripes 0,1 (devids 1,2), P on stripe 2 (devid 3).
  auto a = btrfs::map_raid56(c, L);
  CHECK(a.full.row == 0);
  CHECK(a.full.logical == L);
  CHECK(a.data_index == 0);
  CHECK(a.unit_offset == 0);
  CHECK(a.devid() == 1);
  CHECK(a.physical() == 10 * MiB);
  CHECK(a.full.data == std::vector<StripeUnit>{unit(1, 0), unit(2, 0)});
  CHECK(a.full.p == unit(3, 0));
  CHECK_FALSE(a.full.q);
  // Second unit of row 0, one sector in.
  auto b = btrfs::map_raid56(c, L + k_unit + 4096);
  CHECK(b.data_index == 1);
  CHECK(b.devid() == 2);
  CHECK(b.physical() == 20 * MiB + 4096);
  // Row 1 (logical L+128K): members start at stripe 1: data devids 2,3, P devid 1, 64K in.
  auto r1 = btrfs::map_raid56(c, L + 2 * k_unit + 8192);
  CHECK(r1.full.row == 1);
  CHECK(r1.full.logical == L + 2 * k_unit);
  CHECK(r1.data_index == 0);
  CHECK(r1.devid() == 2);
  CHECK(r1.physical() == 20 * MiB + k_unit + 8192);
  CHECK(r1.full.data == std::vector<StripeUnit>{unit(2, 1), unit(3, 1)});
  CHECK(r1.full.p == unit(1, 1));
  // Row 2, last byte of its first unit: data devids 3,1, P devid 2.
  auto r2 = btrfs::map_raid56(c, L + 4 * k_unit + k_unit - 1);
  CHECK(r2.full.row == 2);
  CHECK(r2.data_index == 0);
  CHECK(r2.unit_offset == k_unit - 1);
  CHECK(r2.devid() == 3);
  CHECK(r2.physical() == 30 * MiB + 2 * k_unit + k_unit - 1);
  CHECK(r2.full.p == unit(2, 2));
  // Row 3 wraps around: same members as row 0, one unit further down each device.
  auto r3 = btrfs::map_raid56(c, L + 6 * k_unit);
  CHECK(r3.full.data == std::vector<StripeUnit>{unit(1, 3), unit(2, 3)});
  CHECK(r3.full.p == unit(3, 3));
}

TEST_CASE("raid5 on 4 devices and raid6 on 4 devices")
{
  // RAID5, 3 data units per row: logical unit 5 is row 1, data unit 2, on stripe (1+2)%4 = 3.
  const auto r5 = chunk(BTRFS_BLOCK_GROUP_RAID5, 4);
  auto a = btrfs::map_raid56(r5, L + 5 * k_unit + 512);
  CHECK(a.full.row == 1);
  CHECK(a.full.logical == L + 3 * k_unit);
  CHECK(a.data_index == 2);
  CHECK(a.devid() == 4);
  CHECK(a.physical() == 40 * MiB + k_unit + 512);
  CHECK(a.full.data == std::vector<StripeUnit>{unit(2, 1), unit(3, 1), unit(4, 1)});
  CHECK(a.full.p == unit(1, 1));

  // RAID6, 2 data units per row, P then Q after them.
  const auto r6 = chunk(BTRFS_BLOCK_GROUP_RAID6, 4);
  CHECK(btrfs::parity_stripes(r6) == 2);
  auto z = btrfs::map_raid56(r6, L);
  CHECK(z.full.data == std::vector<StripeUnit>{unit(1, 0), unit(2, 0)});
  CHECK(z.full.p == unit(3, 0));
  REQUIRE(z.full.q);
  CHECK(*z.full.q == unit(4, 0));
  // Row 1: data on stripes 1,2, P on 3, Q wraps to stripe 0.
  auto o = btrfs::map_raid56(r6, L + 2 * k_unit);
  CHECK(o.full.data == std::vector<StripeUnit>{unit(2, 1), unit(3, 1)});
  CHECK(o.full.p == unit(4, 1));
  CHECK(*o.full.q == unit(1, 1));
  // Row 3, second data unit, 8 KiB in: stripe (3+1)%4 = 0; P on 1, Q on 2, data 0 on 3.
  auto t = btrfs::map_raid56(r6, L + 3 * 2 * k_unit + k_unit + 8192);
  CHECK(t.full.row == 3);
  CHECK(t.data_index == 1);
  CHECK(t.devid() == 1);
  CHECK(t.physical() == 10 * MiB + 3 * k_unit + 8192);
  CHECK(t.full.data == std::vector<StripeUnit>{unit(4, 3), unit(1, 3)});
  CHECK(t.full.p == unit(2, 3));
  CHECK(*t.full.q == unit(3, 3));
}

TEST_CASE("raid5/6: every device unit of the chunk holds exactly one member of one row")
{
  for (auto [profile, devs] : {std::pair{BTRFS_BLOCK_GROUP_RAID5, 2},
                               {BTRFS_BLOCK_GROUP_RAID5, 3},
                               {BTRFS_BLOCK_GROUP_RAID5, 5},
                               {BTRFS_BLOCK_GROUP_RAID6, 3},
                               {BTRFS_BLOCK_GROUP_RAID6, 4},
                               {BTRFS_BLOCK_GROUP_RAID6, 6}}) {
    CAPTURE(profile);
    CAPTURE(devs);
    const auto c = chunk(profile, static_cast<uint16_t>(devs), 16 * k_unit);
    std::set<std::pair<uint64_t, uint64_t>> seen;
    for (uint64_t off = 0; off < c.length; off += k_unit) {
      const auto place = btrfs::map_raid56(c, L + off);
      if (place.data_index != 0) {
        continue; // each row once
      }
      std::vector<StripeUnit> members = place.full.data;
      members.push_back(place.full.p);
      if (place.full.q) {
        members.push_back(*place.full.q);
      }
      CHECK(members.size() == static_cast<size_t>(devs));
      for (const auto& m : members) {
        CHECK(m.physical == m.devid * 10 * MiB + place.full.row * k_unit);
        CHECK(seen.insert({m.devid, m.physical}).second);
      }
    }
    CHECK(seen.size() == static_cast<size_t>(devs) * 16);
  }
}

TEST_CASE("raid5/6 mapping errors")
{
  auto r5 = chunk(BTRFS_BLOCK_GROUP_RAID5, 3);
  CHECK(error_of(r5, L - 1) == Errc::not_found);
  CHECK(error_of(r5, L + r5.length) == Errc::not_found);
  auto r1 = r5;
  r1.type = BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_RAID1;
  CHECK_FALSE(btrfs::is_raid56(r1));
  CHECK(error_of(r1, L) == Errc::unsupported);
  auto lonely = chunk(BTRFS_BLOCK_GROUP_RAID6, 2);
  lonely.length = 64 * MiB;                     // chunk() gives it no length: it has no data unit
  CHECK(error_of(lonely, L) == Errc::internal); // Q and P but no data unit
  auto short_list = r5;
  short_list.stripes.pop_back();
  CHECK(error_of(short_list, L) == Errc::internal);
  // map_logical() still refuses: a RAID5/6 sector has no second readable copy.
  CHECK_THROWS_AS((void)btrfs::map_logical(r5, L), Error);
}

TEST_CASE("P and Q of a few bytes computed by hand")
{
  // D0 = 0x01, D1 = 0x80, D2 = 0x80: P = 0x01; Q = 1*0x01 ^ 2*0x80 ^ 4*0x80, where
  // 2*0x80 = 0x100 ^ 0x11d = 0x1d and 4*0x80 = 2*0x1d = 0x3a, so Q = 0x01^0x1d^0x3a = 0x26.
  // Second byte: D0 = 0xff, D1 = 0xff, D2 = 0: P = 0; Q = 0xff ^ 2*0xff = 0xff ^ 0xe3 = 0x1c.
  const std::vector<uint8_t> d0{0x01, 0xff}, d1{0x80, 0xff}, d2{0x80, 0x00};
  const std::vector<std::span<const uint8_t>> data{d0, d1, d2};
  std::vector<uint8_t> p(2), q(2);
  raid56::gen_pq(data, p, q);
  CHECK(p == std::vector<uint8_t>{0x01, 0x00});
  CHECK(q == std::vector<uint8_t>{0x26, 0x1c});
  raid56::gen_p(data, p);
  CHECK(p == std::vector<uint8_t>{0x01, 0x00});
}

TEST_CASE("P/Q generation and check agree with the reference, aligned or not")
{
  for (unsigned ndata : {1U, 2U, 3U, 5U}) {
    for (size_t len : {size_t{1}, size_t{33}, size_t{64}, size_t{4096}}) {
      CAPTURE(ndata);
      CAPTURE(len);
      const auto s = random_stripe(ndata, len, ndata * 1000 + static_cast<unsigned>(len));
      // Unaligned: vectors (any address), so ISA-L's table-driven path may run.
      std::vector<uint8_t> p(len), q(len);
      raid56::gen_pq(s.views(), p, q);
      CHECK(p == s.p);
      CHECK(q == s.q);
      std::vector<uint8_t> p2(len);
      raid56::gen_p(s.views(), p2);
      CHECK(p2 == s.p);
      // Aligned copies: page-aligned buffers take xor_gen/pq_gen when the length allows it.
      std::vector<sys::AlignedBuffer> bufs;
      std::vector<std::span<const uint8_t>> views;
      for (const auto& d : s.data) {
        bufs.emplace_back(len);
        std::memcpy(bufs.back().data(), d.data(), len);
        views.emplace_back(bufs.back().data(), len);
      }
      sys::AlignedBuffer ap(len), aq(len);
      raid56::gen_pq(views, {ap.data(), len}, {aq.data(), len});
      CHECK(std::memcmp(ap.data(), s.p.data(), len) == 0);
      CHECK(std::memcmp(aq.data(), s.q.data(), len) == 0);
      raid56::gen_p(views, {ap.data(), len});
      CHECK(std::memcmp(ap.data(), s.p.data(), len) == 0);

      CHECK(raid56::p_matches(s.views(), s.p));
      CHECK(raid56::q_matches(s.views(), s.q));
      auto bad = s.q;
      bad[len / 2] ^= 0x40;
      CHECK_FALSE(raid56::q_matches(s.views(), bad));
      CHECK(raid56::p_matches(s.views(), s.p)); // P does not see Q's damage
      auto badp = s.p;
      badp[len - 1] ^= 1;
      CHECK_FALSE(raid56::p_matches(s.views(), badp));
    }
  }
}

TEST_CASE("rebuilding lost data units from P, from Q and from both")
{
  for (unsigned ndata : {1U, 2U, 3U, 6U}) {
    CAPTURE(ndata);
    const size_t len = 4096 + 7; // not a SIMD multiple on purpose
    const auto s = random_stripe(ndata, len, 77 + ndata);
    for (unsigned a = 0; a < ndata; ++a) {
      CAPTURE(a);
      auto views = s.views();
      views[a] = {}; // a missing unit is not read
      std::vector<uint8_t> out(len);
      raid56::rebuild_from_p(views, a, s.p, out);
      CHECK(out == s.data[a]);
      std::fill(out.begin(), out.end(), 0);
      raid56::rebuild_from_q(views, a, s.q, out);
      CHECK(out == s.data[a]);
      for (unsigned b = 0; b < ndata; ++b) {
        if (b == a) {
          continue;
        }
        CAPTURE(b);
        auto two = s.views();
        two[a] = {};
        two[b] = {};
        std::vector<uint8_t> oa(len), ob(len);
        raid56::rebuild_two(two, a, b, s.p, s.q, oa, ob);
        CHECK(oa == s.data[a]);
        CHECK(ob == s.data[b]);
      }
    }
  }
  // A damaged unit rebuilt from the others gives back the original bytes: what scrub compares.
  auto s = random_stripe(2, 4096, 5);
  s.data[1][100] ^= 0xff;
  std::vector<uint8_t> out(4096);
  auto views = s.views();
  raid56::rebuild_from_p(views, 0, s.p, out);
  CHECK(out != s.data[0]); // built from a damaged unit: wrong
  CHECK_FALSE(raid56::p_matches(views, s.p));
}

TEST_CASE("parity calls refuse mismatched buffers")
{
  const auto s = random_stripe(2, 64, 1);
  std::vector<uint8_t> small(32), out(64);
  CHECK_THROWS_AS(raid56::gen_p(s.views(), small), Error);
  CHECK_THROWS_AS(raid56::rebuild_from_p(s.views(), 2, s.p, out), Error);
  CHECK_THROWS_AS(raid56::rebuild_two(s.views(), 1, 1, s.p, s.q, out, out), Error);
  const std::vector<std::span<const uint8_t>> none;
  CHECK_THROWS_AS(raid56::gen_p(none, out), Error);
}
