// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/host/kernel_policy.hpp>

namespace vmcsum::core {

namespace {
// Reads decimal digits at s[i...]; false when there are none or the value overflows.
bool read_number(std::string_view s, size_t& i, unsigned& out)
{
  size_t start = i;
  unsigned long long v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
    if (v > 0xffffffffULL) {
      return false;
    }
    ++i;
  }
  out = static_cast<unsigned>(v);
  return i > start;
}

std::string ver(const KernelVersion& v)
{
  return std::to_string(v.major) + "." + std::to_string(v.minor) + "." + std::to_string(v.patch);
}
} // namespace

std::optional<KernelVersion> parse_kernel_release(std::string_view release)
{
  KernelVersion v;
  size_t i = 0;
  if (!read_number(release, i, v.major) || i >= release.size() || release[i] != '.') {
    return std::nullopt;
  }
  ++i;
  if (!read_number(release, i, v.minor)) {
    return std::nullopt;
  }
  if (i + 1 < release.size() && release[i] == '.' && release[i + 1] >= '0' &&
      release[i + 1] <= '9') {
    ++i;
    if (!read_number(release, i, v.patch)) {
      return std::nullopt;
    }
  }
  return v;
}

std::string dio_write_name(DioWrite w)
{
  switch (w) {
  case DioWrite::direct:
    return "direct";
  case DioWrite::buffered_fallback:
    return "buffered-fallback";
  case DioWrite::bounce:
    return "bounce";
  case DioWrite::unknown:
    break;
  }
  return "unknown";
}

DioPolicy dio_policy_for(const KernelVersion& v)
{
  DioPolicy p;
  const std::string name = ver(v);
  const KernelVersion series{v.major, v.minor, 0};
  const bool is_6_6 = series == KernelVersion{6, 6, 0};
  const bool is_6_12 = series == KernelVersion{6, 12, 0};
  const bool is_6_18 = series == KernelVersion{6, 18, 0};
  const bool is_6_19 = series == KernelVersion{6, 19, 0};

  // e9b7b9d9e78e "btrfs: use IOMAP_DIO_BOUNCE flag instead of falling back to buffered IO"
  // (mainline 7.3, docs/kernel-facts.md "Re-checked 2026-12-02"): both fallbacks below become a
  // copy into private bounce pages; NODATASUM files on SINGLE/RAID0 stay zero-copy.
  if (v >= KernelVersion{7, 3, 0}) {
    p.checksummed = p.checksummed_duplicated = p.nodatasum_duplicated = DioWrite::bounce;
    p.nodatasum_single = DioWrite::direct;
    p.reason = name + " is 7.3 or later: O_DIRECT writes to checksummed files, and to every file "
                      "on a duplicated profile, are copied into bounce buffers (e9b7b9d9e78e); "
                      "NODATASUM files on single/raid0 get zero-copy direct IO.";
    return p;
  }

  // 968f19c5b1b7 "btrfs: always fallback to buffered write if the inode requires checksum":
  // v6.15-rc1, backported only to 6.12.77 and 6.6.130 (6.13.y/6.14.y reached EOL without it).
  std::string csum_reason;
  if (v >= KernelVersion{6, 15, 0}) {
    p.checksummed = DioWrite::buffered_fallback;
    csum_reason = name + " is 6.15 or later, which falls back to buffered writes for "
                         "checksummed files (968f19c5b1b7)";
  } else if (is_6_12 && v.patch >= 77) {
    p.checksummed = DioWrite::buffered_fallback;
    csum_reason = name + " carries the 6.12.77 backport of 968f19c5b1b7";
  } else if (is_6_6 && v.patch >= 130) {
    p.checksummed = DioWrite::buffered_fallback;
    csum_reason = name + " carries the 6.6.130 backport of 968f19c5b1b7";
  } else {
    p.checksummed = DioWrite::direct;
    if (is_6_12 || is_6_6) {
      csum_reason = name + " predates the " + (is_6_12 ? "6.12.77" : "6.6.130") +
                    " backport of 968f19c5b1b7, so O_DIRECT writes to checksummed files on "
                    "single/raid0 are zero-copy";
    } else {
      csum_reason = name + " has no version of 968f19c5b1b7 (mainline 6.15, backports 6.12.77 "
                           "and 6.6.130), so O_DIRECT writes to checksummed files on "
                           "single/raid0 are zero-copy";
    }
  }

  // 7c2830f00c3e "btrfs: fallback to buffered IO if the data profile has duplication": mainline
  // 7.0, stable 6.12.75, 6.18.16 and 6.19.6 (re-checked 2026-12-02), never 6.6.y. It tests the
  // profile, not the csum flag, so checksummed inodes on duplicated profiles fall back too.
  std::string dup_reason;
  const bool dup_rule = v >= KernelVersion{7, 0, 0} || (is_6_12 && v.patch >= 75) ||
                        (is_6_18 && v.patch >= 16) || (is_6_19 && v.patch >= 6);
  if (dup_rule) {
    p.nodatasum_duplicated = p.checksummed_duplicated = DioWrite::buffered_fallback;
    dup_reason = "every file on a duplicated profile (dup, raid1*, raid10, raid5/6) falls back "
                 "too, NODATASUM or not (7c2830f00c3e: 7.0, 6.12.75, 6.18.16, 6.19.6)";
  } else {
    p.nodatasum_duplicated = DioWrite::direct;
    p.checksummed_duplicated = p.checksummed;
    dup_reason = "NODATASUM files get direct IO on every profile (the duplicated-profile "
                 "fallback, 7c2830f00c3e, came with 7.0, 6.12.75, 6.18.16 and 6.19.6)";
  }
  p.nodatasum_single = DioWrite::direct;
  p.reason = csum_reason + "; " + dup_reason + ".";
  return p;
}

DioWrite dio_write_for(const DioPolicy& p, bool nodatasum, bool duplicated)
{
  if (nodatasum) {
    return duplicated ? p.nodatasum_duplicated : p.nodatasum_single;
  }
  return duplicated ? p.checksummed_duplicated : p.checksummed;
}

} // namespace vmcsum::core
