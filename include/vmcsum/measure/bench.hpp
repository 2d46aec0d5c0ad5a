// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum bench: what checksums cost O_DIRECT writers (QEMU cache=none) on one filesystem.
// Writes the same bytes at the same offsets into two unnamed scratch files, one checksummed and
// one NOCOW, and measures wall time and the CPU time (user+sys, getrusage) of vmcsum itself.
#pragma once

#include <vmcsum/host/kernel_policy.hpp>
#include <vmcsum/measure/progress.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmcsum::core {

struct BenchOptions
{
  std::string path = ".";     // a file or directory on the btrfs to measure
  double seconds = 30;        // the whole budget; each run gets an equal share
  unsigned runs = 2;          // per case and kind, to see whether results repeat
  double spread_limit = 0.15; // runs further apart than this are reported as not repeating
  uint64_t max_file_size = 256ULL << 20;     // per scratch file (also bounded by free space / 8)
  std::optional<std::string> kernel_release; // default: uname -r (only for the notes)
};

struct BenchRun
{
  uint64_t bytes = 0;
  double seconds = 0; // wall time, the final fsync included
  double user_seconds = 0;
  double sys_seconds = 0;
  bool cut = false; // stopped by the time limit before writing all of the case's bytes

  double throughput() const;  // bytes per second
  double cpu_per_gib() const; // (user+sys) seconds per GiB written
};

struct BenchSide
{
  std::vector<BenchRun> runs;
  double throughput = 0;                   // median of the runs, bytes per second
  double cpu_per_gib = 0;                  // median of the runs
  std::optional<double> throughput_spread; // (max-min)/min over the runs; none with one run
  std::optional<double> cpu_spread;
};

struct BenchCase
{
  std::string name; // "seq-1m", "rand-64k", "rand-4k"
  bool sequential = true;
  uint32_t block_size = 0;
  uint64_t bytes = 0; // written by every run of both kinds
  BenchSide checksummed;
  BenchSide nocow;
  std::optional<double> throughput_ratio; // checksummed / NOCOW
  std::optional<double> cpu_ratio;        // checksummed / NOCOW, CPU per byte
  std::optional<bool> stable;             // every spread within the limit; none with one run
  std::string meaning;                    // one sentence
};

struct BenchResult
{
  std::string path;
  std::string scratch_dir;
  std::string mount;
  std::string fsid;
  std::vector<std::string> data_profiles;
  std::string kernel_release;
  // The version table's cells for this filesystem's data profile, for the notes.
  DioWrite table_checksummed = DioWrite::unknown;
  DioWrite table_nocow = DioWrite::unknown;
  double seconds = 0;
  unsigned runs = 0;
  double spread_limit = 0.15;
  uint64_t file_size = 0;
  std::vector<BenchCase> cases;
  std::optional<bool> stable;
  std::string meaning;
  std::vector<std::string> notes;
  int interrupted = 0; // the signal that stopped the run, 0 if none
};

// Runs the benchmark. Throws Error when PATH is missing, not on btrfs, or lacks space, and
// Errc::usage for a bad budget. Signals are held back as in probe(): scratch files are
// unnamed, so nothing is left behind even when vmcsum is killed.
// `progress` hears of each run: its phase ("prefill checksummed", "seq-1m calibrate",
// "rand-4k nocow 2/2"), bytes written and, for runs bounded by bytes, their total; at most ten
// times a second, so that it costs the measured CPU time nothing worth counting.
BenchResult bench(const BenchOptions& opts, const MeasureProgressFn& progress = {});

// The median (the mean of the middle two for an even count); 0 for none.
double median(std::vector<double> values);

// (max - min) / min; none for fewer than two values or a minimum of zero.
std::optional<double> relative_spread(const std::vector<double>& values);

// Fills a side's medians and spreads from its runs.
void summarize(BenchSide& side);

// Fills a case's ratios, stability and meaning from its two summarized sides.
void finish_case(BenchCase& c, double spread_limit);

// What the figures include by the version table's cells for checksummed and NOCOW files on
// this profile: a page-cache round trip (buffered fallback) or one memcpy into bounce pages
// (7.3's bounce buffers). One sentence each; none for direct or unknown.
std::vector<std::string> table_notes(DioWrite checksummed, DioWrite nocow);

// One sentence over all cases ("On this filesystem checksummed images pay 1.4x to 2.1x the CPU
// per byte ..."); "" when no ratio is known.
std::string bench_meaning(const std::vector<BenchCase>& cases);

// "2.1x", "0.48x".
std::string format_ratio(double r);

} // namespace vmcsum::core
