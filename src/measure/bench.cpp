// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "scratch.hpp"

#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/profile.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/host_context.hpp>
#include <vmcsum/measure/bench.hpp>
#include <vmcsum/measure/probe.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/mount_table.hpp>
#include <vmcsum/sys/signals.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {
constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;
}

double BenchRun::throughput() const
{
  return seconds > 0 ? static_cast<double>(bytes) / seconds : 0;
}

double BenchRun::cpu_per_gib() const
{
  return bytes > 0 ? (user_seconds + sys_seconds) / (static_cast<double>(bytes) / k_gib) : 0;
}

double median(std::vector<double> values)
{
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

std::optional<double> relative_spread(const std::vector<double>& values)
{
  if (values.size() < 2) {
    return std::nullopt;
  }
  auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  if (*lo <= 0) {
    return std::nullopt;
  }
  return (*hi - *lo) / *lo;
}

void summarize(BenchSide& side)
{
  std::vector<double> tp, cpu;
  for (const auto& r : side.runs) {
    tp.push_back(r.throughput());
    cpu.push_back(r.cpu_per_gib());
  }
  side.throughput = median(tp);
  side.cpu_per_gib = median(cpu);
  side.throughput_spread = relative_spread(tp);
  side.cpu_spread = relative_spread(cpu);
}

std::string format_ratio(double r)
{
  char buf[32];
  std::snprintf(buf, sizeof buf, r >= 0.995 ? "%.1fx" : "%.2fx", r);
  return buf;
}

namespace {

std::string case_words(const BenchCase& c)
{
  std::string size = c.block_size >= (1u << 20) ? std::to_string(c.block_size >> 20) + " MiB"
                                                : std::to_string(c.block_size >> 10) + " KiB";
  return (c.sequential ? "sequential " : "random ") + size + " O_DIRECT writes";
}

// "2.1x" or "1.4x to 2.1x".
std::string range_text(std::vector<double> v)
{
  std::sort(v.begin(), v.end());
  std::string lo = format_ratio(v.front());
  std::string hi = format_ratio(v.back());
  return lo == hi ? lo : lo + " to " + hi;
}

} // namespace

void finish_case(BenchCase& c, double spread_limit)
{
  c.throughput_ratio.reset();
  c.cpu_ratio.reset();
  if (c.checksummed.throughput > 0 && c.nocow.throughput > 0) {
    c.throughput_ratio = c.checksummed.throughput / c.nocow.throughput;
  }
  if (c.checksummed.cpu_per_gib > 0 && c.nocow.cpu_per_gib > 0) {
    c.cpu_ratio = c.checksummed.cpu_per_gib / c.nocow.cpu_per_gib;
  }
  c.stable.reset();
  bool any = false;
  bool within = true;
  for (const auto* s : {&c.checksummed.throughput_spread, &c.checksummed.cpu_spread,
                        &c.nocow.throughput_spread, &c.nocow.cpu_spread}) {
    if (*s) {
      any = true;
      within = within && **s <= spread_limit;
    }
  }
  if (any) {
    c.stable = within;
  }
  std::vector<std::string> parts;
  if (c.cpu_ratio) {
    parts.push_back("pay " + format_ratio(*c.cpu_ratio) + " the CPU per byte");
  }
  if (c.throughput_ratio) {
    parts.push_back("get " + format_ratio(*c.throughput_ratio) + " the throughput");
  }
  if (parts.empty()) {
    c.meaning = "for " + case_words(c) + " no ratio could be computed (a side measured nothing)";
    return;
  }
  c.meaning = "for " + case_words(c) + ", checksummed images " + parts[0] +
              (parts.size() > 1 ? " and " + parts[1] : std::string()) + " of NOCOW images";
}

std::string bench_meaning(const std::vector<BenchCase>& cases)
{
  std::vector<double> cpu, tp;
  for (const auto& c : cases) {
    if (c.cpu_ratio) {
      cpu.push_back(*c.cpu_ratio);
    }
    if (c.throughput_ratio) {
      tp.push_back(*c.throughput_ratio);
    }
  }
  if (cpu.empty() && tp.empty()) {
    return "";
  }
  std::string s = "On this filesystem checksummed images ";
  if (!cpu.empty()) {
    s += "pay " + range_text(cpu) + " the CPU per byte written with cache=none (O_DIRECT)";
  }
  if (!tp.empty()) {
    s += std::string(cpu.empty() ? "get " : " and get ") + range_text(tp) +
         " the throughput of NOCOW images";
  } else {
    s += " compared with NOCOW images";
  }
  return s + ".";
}

namespace {

struct Interrupted
{
  int signal;
};

double cpu_seconds(const timeval& tv)
{
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

struct Clock
{
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double elapsed() const
  {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
};

// Tells the caller where a run is, at most every k_report_interval seconds.
constexpr double k_report_interval = 0.1;
struct Reporter
{
  const MeasureProgressFn& fn;
  const std::string& path;
  void operator()(const std::string& phase, uint64_t done, uint64_t total) const
  {
    if (fn) {
      fn({path, phase, done, total});
    }
  }
};

struct RunSpec
{
  bool sequential = true;
  uint32_t block = 0;
  uint64_t file_size = 0;
  uint64_t bytes = 0; // 0: write until `budget` seconds have passed
  double budget = 0;  // seconds, for a time-bounded run
  double limit = 0;   // seconds, hard stop of a byte-bounded run
  uint64_t seed = 0;
};

// One measured run: writes, then fsync, all inside the timed and CPU-accounted span.
BenchRun run_once(int fd, const std::string& display, const RunSpec& spec,
                  const sys::AlignedBuffer& data, const sys::DeferSignals& signals,
                  const Reporter& report, const std::string& phase)
{
  std::mt19937_64 rng(spec.seed);
  const uint64_t blocks = spec.file_size / spec.block;
  const uint64_t slices = data.size() / spec.block;
  uint64_t seq = 0;
  BenchRun run;
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  Clock clock;
  double next_report = 0;
  for (uint64_t i = 0;; ++i) {
    const double t = clock.elapsed();
    if (spec.bytes ? run.bytes >= spec.bytes : (i > 0 && t >= spec.budget)) {
      break;
    }
    if (spec.bytes && i > 0 && t >= spec.limit) {
      run.cut = true;
      break;
    }
    if (t >= next_report) {
      report(phase, run.bytes, spec.bytes);
      next_report = t + k_report_interval;
    }
    uint64_t block = spec.sequential ? seq++ % blocks : rng() % blocks;
    const unsigned char* src = data.data() + (i % slices) * spec.block;
    ssize_t n = ::pwrite(fd, src, spec.block, static_cast<off_t>(block * spec.block));
    if (n < 0) {
      throw_errno("O_DIRECT write", display);
    }
    if (static_cast<uint64_t>(n) != spec.block) {
      throw Error(Errc::io, "short O_DIRECT write", display);
    }
    run.bytes += spec.block;
    if (int sig = signals.pending()) {
      throw Interrupted{sig};
    }
  }
  if (::fsync(fd) != 0) {
    throw_errno("fsync", display);
  }
  run.seconds = clock.elapsed();
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  run.user_seconds = cpu_seconds(after.ru_utime) - cpu_seconds(before.ru_utime);
  run.sys_seconds = cpu_seconds(after.ru_stime) - cpu_seconds(before.ru_stime);
  return run;
}

// Writes the file sequentially so that every measured write is an overwrite, as in a VM image
// that has been in use: NOCOW then writes in place, checksummed files copy on write.
uint64_t prefill(int fd, const std::string& display, uint64_t max_size, double budget,
                 const sys::AlignedBuffer& data, const sys::DeferSignals& signals,
                 const Reporter& report, const std::string& phase)
{
  RunSpec spec;
  spec.sequential = true;
  spec.block = static_cast<uint32_t>(data.size());
  spec.file_size = max_size;
  spec.bytes = max_size;
  spec.limit = budget;
  BenchRun r = run_once(fd, display, spec, data, signals, report, phase);
  return std::max<uint64_t>(r.bytes / data.size() * data.size(), data.size());
}

} // namespace

std::vector<std::string> table_notes(DioWrite checksummed, DioWrite nocow)
{
  std::vector<std::string> notes;
  // docs/kernel-facts.md §1.1 (buffered fallback) and §1.4 (bounce buffers, e9b7b9d9e78e, 7.3).
  if (checksummed == DioWrite::buffered_fallback) {
    notes.push_back("this kernel turns O_DIRECT writes to checksummed files into buffered writes "
                    "with synchronous writeback (version table): the checksummed figures include "
                    "that copy and the page-cache round trip");
  } else if (checksummed == DioWrite::bounce) {
    notes.push_back("this kernel copies O_DIRECT writes to checksummed files into bounce buffers "
                    "(version table): the checksummed figures include one memcpy into bounce "
                    "pages, no page-cache round trip");
  }
  if (nocow == DioWrite::buffered_fallback) {
    notes.push_back("on this data profile the kernel falls back to buffered writes for NOCOW "
                    "files too (version table), so NOCOW saves only the checksumming");
  } else if (nocow == DioWrite::bounce) {
    notes.push_back("on this data profile the kernel copies O_DIRECT writes to NOCOW files into "
                    "bounce buffers too (version table), so NOCOW saves only the checksumming");
  }
  return notes;
}

namespace {

void check_options(const BenchOptions& opts)
{
  if (!(opts.seconds > 0) || opts.seconds > 86400) {
    throw Error(Errc::usage, "--seconds must be more than 0 and at most 86400");
  }
  if (opts.runs < 1 || opts.runs > 100) {
    throw Error(Errc::usage, "--runs must be between 1 and 100");
  }
}

// The filesystem of the scratch directory: its fsid, data profiles, mount and what the version
// table expects of it. Throws when it is not btrfs.
btrfs::FsInfo describe_filesystem(const BenchOptions& opts, BenchResult& r)
{
  sys::Fd dfd = sys::open_or_throw(r.scratch_dir, O_RDONLY | O_DIRECTORY);
  struct statfs sfs
  {
  };
  if (::fstatfs(dfd.get(), &sfs) < 0) {
    throw_errno("statfs", r.scratch_dir);
  }
  if (static_cast<unsigned long>(sfs.f_type) != BTRFS_SUPER_MAGIC) {
    throw Error(Errc::not_btrfs, "not on btrfs: nothing to compare", opts.path);
  }
  auto info = btrfs::fs_info(dfd.get(), r.scratch_dir);
  r.fsid = info.fsid;
  try {
    r.data_profiles = btrfs::data_profiles(btrfs::space_info(dfd.get(), r.scratch_dir));
  } catch (const Error& e) {
    r.notes.push_back("data profile unknown: " + e.detail());
  }
  try {
    sys::MountTable table;
    if (auto m = table.find(r.scratch_dir)) {
      r.mount = m->target;
    }
  } catch (const Error&) {
    r.mount = r.scratch_dir;
  }
  const KernelContext kernel = kernel_context(opts.kernel_release);
  r.kernel_release = kernel.release;
  if (kernel.version) {
    // The cells for this filesystem's profile: on 6.12.75/76 a checksummed file falls back on
    // dup but not on single (kernel_policy.hpp).
    r.table_checksummed = table_answer(kernel.policy, false, r.data_profiles);
    r.table_nocow = table_answer(kernel.policy, true, r.data_profiles);
  }
  return info;
}

struct CaseSpec
{
  const char* name;
  bool sequential;
  uint32_t block;
};
const CaseSpec k_cases[] = {
  {"seq-1m", true, 1u << 20}, {"rand-64k", false, 64u << 10}, {"rand-4k", false, 4u << 10}};

// What every case shares: the two prefilled scratch files, the data written, the signals.
struct Bench
{
  const detail::ScratchFile& csum;
  const detail::ScratchFile& nocow;
  const sys::AlignedBuffer& data;
  const sys::DeferSignals& signals;
  const Reporter& report;
  uint64_t file_size;
  double run_budget; // seconds per run
  unsigned runs;
  double spread_limit;
};

// One case: a calibration run, then `runs` measured runs of each kind, alternating.
BenchCase measure_case(const Bench& b, const CaseSpec& s, std::vector<std::string>& notes)
{
  BenchCase c;
  c.name = s.name;
  c.sequential = s.sequential;
  c.block_size = s.block;
  RunSpec spec;
  spec.sequential = s.sequential;
  spec.block = s.block;
  spec.file_size = b.file_size;
  spec.budget = b.run_budget;
  spec.limit = std::max(b.run_budget * 3, b.run_budget + 2);
  spec.seed = 0x9e3779b97f4a7c15ULL ^ s.block;
  // Calibration, not measured: a time-bounded run on the checksummed file sets the bytes
  // every measured run of both kinds writes, and warms up what a first run would pay
  // alone (the pattern's first copy-on-write of the prefilled extents, cold metadata).
  const std::string name = s.name;
  spec.bytes =
    run_once(b.csum.fd(), b.csum.display(), spec, b.data, b.signals, b.report, name + " calibrate")
      .bytes;
  for (unsigned rep = 0; rep < b.runs; ++rep) {
    // Alternate which kind goes first, so that a drift of the machine hits both alike.
    const bool csum_first = rep % 2 == 0;
    for (int k = 0; k < 2; ++k) {
      const bool is_csum = (k == 0) == csum_first;
      const auto& f = is_csum ? b.csum : b.nocow;
      const std::string phase = name + (is_csum ? " checksummed " : " nocow ") +
                                std::to_string(rep + 1) + "/" + std::to_string(b.runs);
      (is_csum ? c.checksummed : c.nocow)
        .runs.push_back(run_once(f.fd(), f.display(), spec, b.data, b.signals, b.report, phase));
    }
  }
  c.bytes = spec.bytes;
  summarize(c.checksummed);
  summarize(c.nocow);
  finish_case(c, b.spread_limit);
  for (const auto* side : {&c.checksummed, &c.nocow}) {
    for (const auto& run : side->runs) {
      if (run.cut) {
        notes.push_back(c.name + ": a run was stopped by the time limit after " +
                        human_bytes(run.bytes) + "; its figures are per byte all the same");
        break;
      }
    }
  }
  return c;
}

// Makes the two scratch files, fills them, and measures every case the sector size allows.
void measure_cases(const BenchOptions& opts, const btrfs::FsInfo& info, uint64_t size,
                   const Reporter& report, BenchResult& r)
{
  constexpr uint64_t mib = 1 << 20;
  // 5% of the budget fills each file; the rest is shared equally by each case's calibration
  // run and its measured runs.
  const double prefill_budget = opts.seconds * 0.05;
  const double run_budget = opts.seconds * 0.9 / (std::size(k_cases) * (1.0 + 2.0 * opts.runs));

  sys::DeferSignals signals;
  try {
    auto csum = detail::ScratchFile::create(r.scratch_dir, false);
    auto nocow = detail::ScratchFile::create(r.scratch_dir, true);
    if (csum.nocow() || !nocow.nocow()) {
      throw Error(Errc::unsupported, "could not make one checksummed and one NOCOW scratch file",
                  r.scratch_dir);
    }
    sys::AlignedBuffer data(mib);
    std::mt19937_64 fill(0x766d6373756dULL);
    for (size_t i = 0; i + 8 <= data.size(); i += 8) {
      uint64_t v = fill();
      std::memcpy(data.data() + i, &v, 8);
    }
    r.file_size = prefill(csum.fd(), csum.display(), size, prefill_budget, data, signals, report,
                          "prefill checksummed");
    prefill(nocow.fd(), nocow.display(), r.file_size, prefill_budget * 4 + 1, data, signals, report,
            "prefill nocow");
    const Bench b{csum,        nocow,      data,      signals,          report,
                  r.file_size, run_budget, opts.runs, opts.spread_limit};
    for (const auto& s : k_cases) {
      if (info.sectorsize > s.block) {
        r.notes.push_back(std::string(s.name) + " skipped: smaller than the sector size (" +
                          std::to_string(info.sectorsize) + ")");
        continue;
      }
      r.cases.push_back(measure_case(b, s, r.notes));
    }
  } catch (const Interrupted& i) {
    r.interrupted = i.signal;
    r.notes.push_back("interrupted by signal " + std::to_string(i.signal) +
                      "; the scratch files are gone");
  }
}

// Whether the runs of each case repeat, and the notes that say how far to trust the ratios.
void judge_stability(const BenchOptions& opts, BenchResult& r)
{
  std::vector<std::string> unstable;
  bool any = false;
  for (const auto& c : r.cases) {
    if (c.stable) {
      any = true;
      if (!*c.stable) {
        unstable.push_back(c.name);
      }
    }
  }
  if (any) {
    r.stable = unstable.empty();
  }
  if (!unstable.empty()) {
    std::string list;
    for (const auto& n : unstable) {
      list += (list.empty() ? "" : ", ") + n;
    }
    char pct[16];
    std::snprintf(pct, sizeof pct, "%.0f%%", opts.spread_limit * 100);
    r.notes.push_back("runs of " + list + " differ by more than " + pct +
                      ": the machine is not quiet or --seconds is too small, so the ratios are "
                      "uncertain");
  } else if (!any && opts.runs < 2) {
    r.notes.push_back("one run per case: whether the results repeat was not checked");
  }
}

} // namespace

BenchResult bench(const BenchOptions& opts, const MeasureProgressFn& progress)
{
  check_options(opts);
  BenchResult r;
  r.path = opts.path;
  r.seconds = opts.seconds;
  r.runs = opts.runs;
  r.spread_limit = opts.spread_limit;
  r.scratch_dir = detail::scratch_dir_of(opts.path);
  const btrfs::FsInfo info = describe_filesystem(opts, r);

  constexpr uint64_t mib = 1 << 20;
  uint64_t size = std::min(opts.max_file_size, detail::free_bytes(r.scratch_dir) / 8) / mib * mib;
  if (size < 8 * mib) {
    throw Error(Errc::unsupported,
                "not enough free space for two scratch files (64 MiB free wanted)", r.scratch_dir);
  }
  measure_cases(opts, info, size, Reporter{progress, opts.path}, r);
  judge_stability(opts, r);
  r.meaning = bench_meaning(r.cases);
  for (const auto& n : table_notes(r.table_checksummed, r.table_nocow)) {
    r.notes.push_back(n);
  }
  r.notes.push_back("CPU is what vmcsum's own thread spent; work btrfs hands to kernel threads "
                    "(asynchronous checksumming, I/O completion) is not counted");
  return r;
}

} // namespace vmcsum::core
