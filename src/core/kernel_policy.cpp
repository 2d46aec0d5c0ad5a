// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/core/kernel_policy.hpp>

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
                    " backport of 968f19c5b1b7, so O_DIRECT writes to checksummed files are "
                    "zero-copy";
    } else {
      csum_reason = name + " has no version of 968f19c5b1b7 (mainline 6.15, backports 6.12.77 "
                           "and 6.6.130), so O_DIRECT writes to checksummed files are zero-copy";
    }
  }

  // "btrfs: fallback to buffered IO if the data profile has duplication": mainline 7.0,
  // verified in 6.18.44; seen in the 6.12.75-rc2 and 6.19.y queues without a confirmed release.
  std::string dup_reason;
  if (v >= KernelVersion{7, 0, 0}) {
    p.nodatasum_duplicated = DioWrite::buffered_fallback;
    dup_reason = "NODATASUM files on duplicated profiles fall back too (7.0 and later)";
  } else if (is_6_18 && v.patch >= 44) {
    p.nodatasum_duplicated = DioWrite::buffered_fallback;
    dup_reason = "NODATASUM files on duplicated profiles fall back too (verified on 6.18.44)";
  } else if (is_6_18 || is_6_19 || (is_6_12 && v.patch >= 75)) {
    p.nodatasum_duplicated = DioWrite::unknown;
    dup_reason = "whether NODATASUM files on duplicated profiles fall back is unconfirmed for " +
                 name + " (the rule was queued for this series, its first release is unknown)";
  } else {
    p.nodatasum_duplicated = DioWrite::direct;
    dup_reason = "NODATASUM files get direct IO on every profile (the duplicated-profile "
                 "fallback came with 7.0)";
  }
  p.nodatasum_single = DioWrite::direct;
  p.reason = csum_reason + "; " + dup_reason + ".";
  return p;
}

} // namespace vmcsum::core
