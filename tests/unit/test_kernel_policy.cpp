// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/host/kernel_policy.hpp>

#include <doctest/doctest.h>

using namespace vmcsum::core;

namespace {
DioPolicy policy(std::string_view release)
{
  auto v = parse_kernel_release(release);
  REQUIRE_MESSAGE(v, release);
  return dio_policy_for(*v);
}

constexpr auto direct = DioWrite::direct;
constexpr auto fallback = DioWrite::buffered_fallback;
constexpr auto bounce = DioWrite::bounce;
constexpr auto unknown = DioWrite::unknown;
} // namespace

TEST_CASE("kernel release strings")
{
  auto v = parse_kernel_release("6.12.77-amd64");
  REQUIRE(v);
  CHECK(*v == KernelVersion{6, 12, 77});
  // Debian's ABI name: the third number is not the upstream sublevel.
  CHECK(parse_kernel_release("6.1.0-28-amd64") == KernelVersion{6, 1, 0});
  CHECK(parse_kernel_release("6.1.0-28-cloud-amd64") == KernelVersion{6, 1, 0});
  CHECK(parse_kernel_release("6.12.73+deb13-amd64") == KernelVersion{6, 12, 73});
  CHECK(parse_kernel_release("7.0-rc3") == KernelVersion{7, 0, 0});
  CHECK(parse_kernel_release("6.18.44-fc-v782") == KernelVersion{6, 18, 44});
  CHECK(parse_kernel_release("6.18.44\n") == KernelVersion{6, 18, 44});
  CHECK(parse_kernel_release("5.15") == KernelVersion{5, 15, 0});
  CHECK(parse_kernel_release("6.6.") == KernelVersion{6, 6, 0});
  CHECK(parse_kernel_release("6.8.0-45-generic") == KernelVersion{6, 8, 0});

  CHECK_FALSE(parse_kernel_release(""));
  CHECK_FALSE(parse_kernel_release("6"));
  CHECK_FALSE(parse_kernel_release("6."));
  CHECK_FALSE(parse_kernel_release("v6.1"));
  CHECK_FALSE(parse_kernel_release(" 6.1"));
  CHECK_FALSE(parse_kernel_release("linux-6.1"));
  CHECK_FALSE(parse_kernel_release("99999999999.1"));
}

TEST_CASE("versions order by major, minor, patch")
{
  CHECK(KernelVersion{6, 6, 130} > KernelVersion{6, 6, 129});
  CHECK(KernelVersion{6, 15, 0} > KernelVersion{6, 14, 11});
  CHECK(KernelVersion{7, 0, 0} > KernelVersion{6, 19, 99});
}

// Every cell of the table, release by release (docs/kernel-facts.md §1.2, §1.4 and "Re-checked
// 2026-12-02"): 968f19c5b1b7 (checksummed inodes fall back: 6.15, 6.12.77, 6.6.130),
// 7c2830f00c3e (every inode on a duplicated profile falls back: 7.0, 6.12.75, 6.18.16, 6.19.6,
// never 6.6.y), e9b7b9d9e78e (both fallbacks become bounce buffers: 7.3).
TEST_CASE("the version table, cell by cell")
{
  struct Row
  {
    const char* release;
    DioWrite csum_single, csum_dup, nds_single, nds_dup;
  };
  const Row rows[] = {
    // No fix at all: zero-copy everywhere.
    {"5.10.0-30-amd64", direct, direct, direct, direct},
    {"5.15.0-91-generic", direct, direct, direct, direct},
    {"6.1.0-28-amd64", direct, direct, direct, direct},
    {"6.1.176", direct, direct, direct, direct},
    {"6.5.13", direct, direct, direct, direct},
    // 6.6.y: 968f19c5b1b7 from 6.6.130, never the profile rule.
    {"6.6.0", direct, direct, direct, direct},
    {"6.6.129", direct, direct, direct, direct},
    {"6.6.130", fallback, fallback, direct, direct},
    {"6.6.131-lts", fallback, fallback, direct, direct},
    {"6.11.11", direct, direct, direct, direct},
    // 6.12.y: the profile rule (6.12.75) came before 968f19c5b1b7 (6.12.77), so 6.12.75 and
    // 6.12.76 fall back for checksummed files on dup/raid1 but not on single.
    {"6.12.0", direct, direct, direct, direct},
    {"6.12.73+deb13-amd64", direct, direct, direct, direct},
    {"6.12.74", direct, direct, direct, direct},
    {"6.12.75", direct, fallback, direct, fallback},
    {"6.12.76", direct, fallback, direct, fallback},
    {"6.12.77", fallback, fallback, direct, fallback},
    {"6.12.80+deb13-amd64", fallback, fallback, direct, fallback},
    // 6.13.y/6.14.y reached EOL with neither.
    {"6.13.0", direct, direct, direct, direct},
    {"6.13.12", direct, direct, direct, direct},
    {"6.14.6", direct, direct, direct, direct},
    {"6.14.11", direct, direct, direct, direct},
    // 6.15+: checksummed files fall back; NODATASUM ones only once the profile rule arrives.
    {"6.15-rc1", fallback, fallback, direct, direct},
    {"6.15.0", fallback, fallback, direct, direct},
    {"6.16.3", fallback, fallback, direct, direct},
    {"6.17.9", fallback, fallback, direct, direct},
    {"6.18.0", fallback, fallback, direct, direct},
    {"6.18.15", fallback, fallback, direct, direct},
    {"6.18.16", fallback, fallback, direct, fallback},
    {"6.18.44", fallback, fallback, direct, fallback}, // verified on 6.18.44 (§1.5)
    {"6.19.0", fallback, fallback, direct, direct},
    {"6.19.5", fallback, fallback, direct, direct},
    {"6.19.6", fallback, fallback, direct, fallback},
    {"6.19.8", fallback, fallback, direct, fallback},
    {"7.0-rc1", fallback, fallback, direct, fallback},
    {"7.0", fallback, fallback, direct, fallback},
    {"7.0.0", fallback, fallback, direct, fallback},
    {"7.1.3", fallback, fallback, direct, fallback},
    {"7.2", fallback, fallback, direct, fallback},
    {"7.2.4", fallback, fallback, direct, fallback},
    // 7.3: bounce buffers instead of both fallbacks; NODATASUM on single stays zero-copy.
    {"7.3-rc1", bounce, bounce, direct, bounce},
    {"7.3", bounce, bounce, direct, bounce},
    {"7.3.2-arch1-1", bounce, bounce, direct, bounce},
    {"7.4.0", bounce, bounce, direct, bounce},
  };
  for (const auto& row : rows) {
    CAPTURE(row.release);
    const DioPolicy p = policy(row.release);
    CHECK(p.checksummed == row.csum_single);
    CHECK(p.checksummed_duplicated == row.csum_dup);
    CHECK(p.nodatasum_single == row.nds_single);
    CHECK(p.nodatasum_duplicated == row.nds_dup);
    // dio_write_for picks the same cells.
    CHECK(dio_write_for(p, false, false) == row.csum_single);
    CHECK(dio_write_for(p, false, true) == row.csum_dup);
    CHECK(dio_write_for(p, true, false) == row.nds_single);
    CHECK(dio_write_for(p, true, true) == row.nds_dup);
    CHECK_FALSE(p.reason.empty());
  }
}

TEST_CASE("no release of the 6.12, 6.18 and 6.19 lines answers unknown")
{
  for (unsigned minor : {12u, 18u, 19u}) {
    for (unsigned patch = 0; patch <= 200; ++patch) {
      CAPTURE(minor);
      CAPTURE(patch);
      const DioPolicy p = dio_policy_for(KernelVersion{6, minor, patch});
      for (bool nds : {false, true}) {
        for (bool dup : {false, true}) {
          CHECK(dio_write_for(p, nds, dup) != unknown);
        }
      }
    }
  }
  // Nor any other release: the table has no unknown cell left.
  for (unsigned major : {5u, 6u, 7u}) {
    for (unsigned minor = 0; minor <= 20; ++minor) {
      const DioPolicy p = dio_policy_for(KernelVersion{major, minor, 0});
      CAPTURE(major);
      CAPTURE(minor);
      CHECK(p.checksummed != unknown);
      CHECK(p.checksummed_duplicated != unknown);
      CHECK(p.nodatasum_single != unknown);
      CHECK(p.nodatasum_duplicated != unknown);
    }
  }
}

TEST_CASE("dio_write_for reads the cell of the inode kind and the profile")
{
  DioPolicy p;
  p.checksummed = direct;
  p.checksummed_duplicated = fallback;
  p.nodatasum_single = bounce;
  p.nodatasum_duplicated = unknown;
  CHECK(dio_write_for(p, false, false) == direct);
  CHECK(dio_write_for(p, false, true) == fallback);
  CHECK(dio_write_for(p, true, false) == bounce);
  CHECK(dio_write_for(p, true, true) == unknown);
}

TEST_CASE("only a zero-copy write (or an unknown one) can race")
{
  CHECK(race_possible(direct));
  CHECK(race_possible(unknown));
  CHECK_FALSE(race_possible(fallback));
  CHECK_FALSE(race_possible(bounce));
  static_assert(race_possible(DioWrite::direct)); // usable in constant expressions
}

TEST_CASE("the reason names the rules that decided")
{
  auto has = [](const char* release, const char* text) {
    CAPTURE(release);
    CAPTURE(text);
    return policy(release).reason.find(text) != std::string::npos;
  };
  CHECK(has("6.12.77", "6.12.77 backport"));
  CHECK(has("6.6.129", "predates the 6.6.130 backport"));
  CHECK(has("6.6.130", "6.6.130 backport"));
  CHECK(has("6.14.11", "no version of 968f19c5b1b7"));
  CHECK(has("6.12.74", "predates the 6.12.77 backport"));
  CHECK(has("6.12.74", "NODATASUM files get direct IO on every profile"));
  CHECK(has("6.12.75", "predates the 6.12.77 backport"));
  CHECK(has("6.12.75", "7c2830f00c3e"));
  CHECK(has("6.12.75", "NODATASUM or not"));
  CHECK(has("6.18.15", "NODATASUM files get direct IO on every profile"));
  CHECK(has("6.18.16", "NODATASUM or not"));
  CHECK(has("6.19.5", "NODATASUM files get direct IO on every profile"));
  CHECK(has("6.19.6", "NODATASUM or not"));
  CHECK(has("7.0", "6.15 or later"));
  CHECK(has("7.2.4", "NODATASUM or not"));
  CHECK(has("7.3", "bounce buffers"));
  CHECK(has("7.3", "e9b7b9d9e78e"));
  CHECK(has("7.3", "zero-copy"));
}

TEST_CASE("dio write names")
{
  CHECK(dio_write_name(direct) == "direct");
  CHECK(dio_write_name(fallback) == "buffered-fallback");
  CHECK(dio_write_name(bounce) == "bounce");
  CHECK(dio_write_name(unknown) == "unknown");
}
