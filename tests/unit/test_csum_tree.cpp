// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/btrfs/csum_tree.hpp>
#include <vmcsum/error.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace vmcsum;

namespace {
constexpr uint32_t k_ss = 4096;

// An EXTENT_CSUM item body for `n` sectors starting at `logical`: each 4-byte csum spells the
// sector number (logical / 4096), so a visit can be checked against the sector it names.
std::vector<uint8_t> item(uint64_t logical, size_t n)
{
  std::vector<uint8_t> b;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t v = static_cast<uint32_t>(logical / k_ss + i);
    for (int k = 0; k < 4; ++k) {
      b.push_back(static_cast<uint8_t>(v >> (8 * k)));
    }
  }
  return b;
}

// "S" for a sector whose csum names it, "-" for no csum, "X" for a csum naming another sector.
struct Recorder
{
  uint64_t first;
  std::string seen;
  std::vector<uint64_t> logicals;
  size_t stop_after = ~size_t{0};

  btrfs::SectorCsumVisitor visitor()
  {
    return [this](uint64_t logical, std::span<const uint8_t> csum) {
      logicals.push_back(logical);
      if (csum.empty()) {
        seen += '-';
      } else {
        REQUIRE(csum.size() == 4);
        const uint32_t v = csum[0] | csum[1] << 8 | csum[2] << 16 | uint32_t{csum[3]} << 24;
        seen += v == logical / k_ss ? 'S' : 'X';
      }
      return logicals.size() < stop_after;
    };
  }
};

constexpr uint64_t B = 1000 * k_ss; // base logical of the tests
} // namespace

TEST_CASE("max_csum_item_span is one leaf of csums")
{
  // (16384 - 101 header - 25 item) / 4 = 4064 crc32c csums per item at most.
  CHECK(btrfs::max_csum_item_span(16384, 4096, 4) == 4064ULL * 4096);
  CHECK(btrfs::max_csum_item_span(16384, 4096, 32) == 508ULL * 4096);
  CHECK(btrfs::max_csum_item_span(65536, 65536, 8) == 8176ULL * 65536);
}

TEST_CASE("csum walker: an item starting before the range covers its first sectors")
{
  Recorder r;
  btrfs::CsumRangeWalker w(B + 2 * k_ss, 4 * k_ss, k_ss, 4, r.visitor());
  CHECK(w.feed(B - 10 * k_ss, item(B - 10 * k_ss, 4)));      // ends before the range: skipped
  CHECK(w.feed(B, item(B, 4)));                              // covers sectors 2, 3 of it
  CHECK_FALSE(w.feed(B + 4 * k_ss, item(B + 4 * k_ss, 16))); // completes the range
  w.finish();
  CHECK(r.seen == "SSSS");
  CHECK(r.logicals ==
        std::vector<uint64_t>{B + 2 * k_ss, B + 3 * k_ss, B + 4 * k_ss, B + 5 * k_ss});
}

TEST_CASE("csum walker: gaps between items and after the last are sectors without csum")
{
  Recorder r;
  btrfs::CsumRangeWalker w(B, 10 * k_ss, k_ss, 4, r.visitor());
  CHECK(w.feed(B + 1 * k_ss, item(B + 1 * k_ss, 2)));
  CHECK(w.feed(B + 5 * k_ss, item(B + 5 * k_ss, 1)));
  // Split anywhere: two adjacent items continue the same extent.
  CHECK(w.feed(B + 6 * k_ss, item(B + 6 * k_ss, 1)));
  w.finish();
  CHECK(r.seen == "-SS--SS---");
  REQUIRE(r.logicals.size() == 10);
  for (size_t i = 0; i < r.logicals.size(); ++i) {
    CHECK(r.logicals[i] == B + i * k_ss);
  }
}

TEST_CASE("csum walker: no items at all, and items after the range")
{
  SUBCASE("no items")
  {
    Recorder r;
    btrfs::CsumRangeWalker w(B, 3 * k_ss, k_ss, 4, r.visitor());
    w.finish();
    CHECK(r.seen == "---");
  }
  SUBCASE("an item starting at the range end only ends it")
  {
    Recorder r;
    btrfs::CsumRangeWalker w(B, 3 * k_ss, k_ss, 4, r.visitor());
    CHECK_FALSE(w.feed(B + 3 * k_ss, item(B + 3 * k_ss, 8)));
    w.finish();
    CHECK(r.seen == "---");
  }
}

TEST_CASE("csum walker: the range is widened to whole sectors")
{
  Recorder r;
  btrfs::CsumRangeWalker w(B + 100, k_ss, k_ss, 4, r.visitor()); // touches two sectors
  CHECK_FALSE(w.feed(B, item(B, 8)));
  w.finish();
  CHECK(r.seen == "SS");
  CHECK(r.logicals.front() == B);
}

TEST_CASE("csum walker: overlapping items only fill sectors not visited yet")
{
  Recorder r;
  btrfs::CsumRangeWalker w(B, 6 * k_ss, k_ss, 4, r.visitor());
  CHECK(w.feed(B, item(B, 4)));
  auto other = item(B + 2 * k_ss, 4);
  other[0] ^= 0xff; // would show as X if sector 2 were visited twice
  CHECK_FALSE(w.feed(B + 2 * k_ss, other));
  w.finish();
  CHECK(r.seen == "SSSSSS");
}

TEST_CASE("csum walker: the visitor can stop the walk")
{
  Recorder r;
  r.stop_after = 3;
  btrfs::CsumRangeWalker w(B, 10 * k_ss, k_ss, 4, r.visitor());
  CHECK(w.feed(B + 1 * k_ss, item(B + 1 * k_ss, 1)));
  CHECK_FALSE(w.feed(B + 4 * k_ss, item(B + 4 * k_ss, 4))); // gap visit #3 stops
  w.finish();                                               // visits nothing more
  CHECK(r.seen == "-S-");
}

TEST_CASE("csum walker: wider csums are sliced per sector")
{
  std::vector<std::vector<uint8_t>> got;
  btrfs::CsumRangeWalker w(B, 2 * k_ss, k_ss, 32, [&](uint64_t, std::span<const uint8_t> csum) {
    got.emplace_back(csum.begin(), csum.end());
    return true;
  });
  std::vector<uint8_t> body(64);
  for (size_t i = 0; i < body.size(); ++i) {
    body[i] = static_cast<uint8_t>(i);
  }
  CHECK_FALSE(w.feed(B, body));
  w.finish();
  REQUIRE(got.size() == 2);
  CHECK(got[0].size() == 32);
  CHECK(got[0].front() == 0);
  CHECK(got[1].front() == 32);
  CHECK(got[1].back() == 63);
}

TEST_CASE("csum walker: malformed items and parameters throw")
{
  Recorder r;
  btrfs::CsumRangeWalker w(B, 4 * k_ss, k_ss, 4, r.visitor());
  CHECK_THROWS_AS(w.feed(B + 1, item(B, 1)), Error);             // start not sector-aligned
  CHECK_THROWS_AS(w.feed(B, std::vector<uint8_t>(6, 0)), Error); // not whole csums
  CHECK_THROWS_AS(w.feed(B, std::vector<uint8_t>{}), Error);
  CHECK_THROWS_AS(btrfs::CsumRangeWalker(B, k_ss, 0, 4, r.visitor()), Error);
  CHECK_THROWS_AS(btrfs::CsumRangeWalker(B, k_ss, k_ss, 0, r.visitor()), Error);
}

TEST_CASE("RangeCsums tells sectors with and without csum apart")
{
  btrfs::RangeCsums rc;
  rc.logical = B;
  rc.sectorsize = k_ss;
  rc.csum_size = 4;
  rc.present = {1, 0};
  rc.csums = {1, 2, 3, 4, 0, 0, 0, 0};
  CHECK(rc.sectors() == 2);
  CHECK(rc.has(0));
  CHECK_FALSE(rc.has(1));
  CHECK(rc.csum(0).size() == 4);
  CHECK(rc.csum(0)[3] == 4);
  CHECK(rc.csum(1).empty());
}
