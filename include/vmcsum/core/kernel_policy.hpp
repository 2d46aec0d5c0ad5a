// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What an O_DIRECT write to btrfs does on a given kernel, from the version table in
// ../shared/notes/kernel-facts.md §1.2/§1.4. A measured answer (vmcsum probe) beats this one.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vmcsum::core {

struct KernelVersion
{
  unsigned major = 0, minor = 0, patch = 0;
  auto operator<=>(const KernelVersion&) const = default;
};

// Parses the leading "X.Y[.Z]" of a release string such as "6.12.77-amd64",
// "6.1.0-28-cloud-amd64" (Debian's ABI name: 6.1.0 is not the upstream sublevel), "7.0-rc3",
// "6.18.44-fc-v782". nullopt when there is no such prefix.
std::optional<KernelVersion> parse_kernel_release(std::string_view release);

enum class DioWrite {
  direct,            // true zero-copy O_DIRECT: checksummed files can get false mismatches
  buffered_fallback, // copied into the page cache and written back synchronously
  unknown
};
std::string dio_write_name(DioWrite w); // "direct", "buffered-fallback", "unknown"

struct DioPolicy
{
  // O_DIRECT write to a file with data checksums.
  DioWrite checksummed = DioWrite::unknown;
  // O_DIRECT write to a NODATASUM file on a profile with duplication (DUP, RAID1*, RAID10,
  // RAID5/6): since 7.0 (and in 6.18.44) these fall back too.
  DioWrite nodatasum_duplicated = DioWrite::unknown;
  // On SINGLE/RAID0 NODATASUM files always get real direct IO.
  DioWrite nodatasum_single = DioWrite::direct;
  std::string reason; // one sentence: which rule of the table decided
};

// The table. checksummed: direct below 6.15, except 6.12.y >= 6.12.77 and 6.6.y >= 6.6.130
// (backports of 968f19c5b1b7); 6.13.y and 6.14.y never got it; buffered_fallback otherwise.
// nodatasum_duplicated: buffered_fallback from 7.0 on and in 6.18.y >= 6.18.44 (verified);
// unknown where the rule was queued but its first release is unconfirmed (6.18.y < 44, all
// 6.19.y, 6.12.y >= 6.12.75); direct everywhere else.
DioPolicy dio_policy_for(const KernelVersion& v);

} // namespace vmcsum::core
