// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/measure/bench.hpp>

#include <doctest/doctest.h>

using namespace vmcsum::core;

namespace {
BenchRun run(uint64_t bytes, double seconds, double user, double sys)
{
  BenchRun r;
  r.bytes = bytes;
  r.seconds = seconds;
  r.user_seconds = user;
  r.sys_seconds = sys;
  return r;
}

constexpr uint64_t gib = 1ULL << 30;

BenchCase make_case(const char* name, bool seq, uint32_t block, std::vector<BenchRun> csum,
                    std::vector<BenchRun> nocow)
{
  BenchCase c;
  c.name = name;
  c.sequential = seq;
  c.block_size = block;
  c.checksummed.runs = std::move(csum);
  c.nocow.runs = std::move(nocow);
  summarize(c.checksummed);
  summarize(c.nocow);
  finish_case(c, 0.15);
  return c;
}
} // namespace

TEST_CASE("median and spread")
{
  CHECK(median({}) == 0);
  CHECK(median({3}) == 3);
  CHECK(median({4, 1, 3}) == 3);
  CHECK(median({4, 1, 3, 2}) == doctest::Approx(2.5));
  CHECK_FALSE(relative_spread({5}));
  CHECK_FALSE(relative_spread({0, 5})); // no base to compare with
  CHECK(*relative_spread({100, 110}) == doctest::Approx(0.10));
  CHECK(*relative_spread({120, 100, 110}) == doctest::Approx(0.20));
}

TEST_CASE("a run's throughput and CPU per GiB")
{
  BenchRun r = run(2 * gib, 4.0, 0.25, 0.75);
  CHECK(r.throughput() == doctest::Approx(double(gib) / 2));
  CHECK(r.cpu_per_gib() == doctest::Approx(0.5));
  CHECK(BenchRun{}.throughput() == 0);
  CHECK(BenchRun{}.cpu_per_gib() == 0);
}

TEST_CASE("ratios, stability and the meaning of a case")
{
  // Checksummed: 1 GiB in 2 s using 1 s of CPU, twice; NOCOW: in 1 s using 0.5 s.
  BenchCase c =
    make_case("rand-64k", false, 64 << 10, {run(gib, 2, 0.2, 0.8), run(gib, 2, 0.2, 0.8)},
              {run(gib, 1, 0.1, 0.4), run(gib, 1, 0.1, 0.4)});
  REQUIRE(c.throughput_ratio);
  REQUIRE(c.cpu_ratio);
  CHECK(*c.throughput_ratio == doctest::Approx(0.5));
  CHECK(*c.cpu_ratio == doctest::Approx(2.0));
  REQUIRE(c.stable);
  CHECK(*c.stable);
  CHECK(c.meaning == "for random 64 KiB O_DIRECT writes, checksummed images pay 2.0x the CPU per "
                     "byte and get 0.50x the throughput of NOCOW images");

  // 20% apart on the NOCOW side: not repeating.
  BenchCase shaky =
    make_case("seq-1m", true, 1 << 20, {run(gib, 2, 0.2, 0.8), run(gib, 2, 0.2, 0.8)},
              {run(gib, 1.0, 0.1, 0.4), run(gib, 1.2, 0.1, 0.4)});
  REQUIRE(shaky.stable);
  CHECK_FALSE(*shaky.stable);
  CHECK(shaky.meaning.find("sequential 1 MiB") != std::string::npos);

  // 15% exactly is still within the limit.
  BenchCase edge = make_case("rand-4k", false, 4096, {run(gib, 1.0, 0, 1), run(gib, 1.15, 0, 1)},
                             {run(gib, 1, 0, 1), run(gib, 1, 0, 1)});
  CHECK(*edge.stable);

  // One run: nothing to compare.
  BenchCase once = make_case("rand-4k", false, 4096, {run(gib, 1, 0, 1)}, {run(gib, 1, 0, 1)});
  CHECK_FALSE(once.stable);

  // No CPU measured on one side (coarse accounting): only the throughput ratio.
  BenchCase nocpu = make_case("rand-4k", false, 4096, {run(gib, 2, 0, 0.5)}, {run(gib, 1, 0, 0)});
  CHECK_FALSE(nocpu.cpu_ratio);
  CHECK(nocpu.meaning.find("get 0.50x the throughput") != std::string::npos);
  CHECK(nocpu.meaning.find("CPU") == std::string::npos);
}

TEST_CASE("the one-sentence meaning over all cases")
{
  std::vector<BenchCase> cases;
  CHECK(bench_meaning(cases).empty());
  cases.push_back(
    make_case("seq-1m", true, 1 << 20, {run(gib, 2, 0.2, 0.8)}, {run(gib, 1, 0.1, 0.4)}));
  CHECK(bench_meaning(cases) == "On this filesystem checksummed images pay 2.0x the CPU per byte "
                                "written with cache=none (O_DIRECT) and get 0.50x the throughput "
                                "of NOCOW images.");
  cases.push_back(
    make_case("rand-4k", false, 4096, {run(gib, 1, 0.1, 2.0)}, {run(gib, 1, 0.1, 0.9)}));
  CHECK(bench_meaning(cases) ==
        "On this filesystem checksummed images pay 2.0x to 2.1x the CPU per "
        "byte written with cache=none (O_DIRECT) and get 0.50x to 1.0x "
        "the throughput of NOCOW images.");
  CHECK(format_ratio(2.06) == "2.1x");
  CHECK(format_ratio(0.476) == "0.48x");
  CHECK(format_ratio(1.0) == "1.0x");
}

TEST_CASE("what the version table says the figures include")
{
  CHECK(table_notes(DioWrite::direct, DioWrite::direct).empty());
  CHECK(table_notes(DioWrite::unknown, DioWrite::unknown).empty());

  auto fallback = table_notes(DioWrite::buffered_fallback, DioWrite::buffered_fallback);
  REQUIRE(fallback.size() == 2);
  CHECK(fallback[0].find("buffered writes with synchronous writeback") != std::string::npos);
  CHECK(fallback[0].find("page-cache round trip") != std::string::npos);
  CHECK(fallback[1].find("NOCOW saves only the checksumming") != std::string::npos);

  // 7.3 bounce buffers: one memcpy, no page cache; NOCOW zero-copy on single, bounced on dup.
  auto single = table_notes(DioWrite::bounce, DioWrite::direct);
  REQUIRE(single.size() == 1);
  CHECK(single[0].find("one memcpy into bounce pages, no page-cache round trip") !=
        std::string::npos);
  auto dup = table_notes(DioWrite::bounce, DioWrite::bounce);
  REQUIRE(dup.size() == 2);
  CHECK(dup[1].find("bounce buffers too") != std::string::npos);
}
