// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What an O_DIRECT write to btrfs does on a given kernel, from the version table in
// docs/kernel-facts.md §1.2/§1.4 and its "Re-checked 2026-12-02" section. A measured
// answer (vmcsum probe) beats this one.
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
  bounce,            // copied into private bounce pages, then written directly (7.3+)
  unknown
};
std::string dio_write_name(DioWrite w); // "direct", "buffered-fallback", "bounce", "unknown"

// Whether a write made this way can leave data that does not match its checksum (or copies that
// differ): only a true zero-copy write can. unknown counts as possible.
constexpr bool race_possible(DioWrite w)
{
  return w == DioWrite::direct || w == DioWrite::unknown;
}

struct DioPolicy
{
  // O_DIRECT write to a file with data checksums on SINGLE/RAID0 data.
  DioWrite checksummed = DioWrite::unknown;
  // The same on a profile with duplication (DUP, RAID1*, RAID10, RAID5/6): 7c2830f00c3e makes
  // every inode fall back there, checksummed ones too (7.0, 6.12.75, 6.18.16, 6.19.6).
  DioWrite checksummed_duplicated = DioWrite::unknown;
  // O_DIRECT write to a NODATASUM file on a profile with duplication.
  DioWrite nodatasum_duplicated = DioWrite::unknown;
  // On SINGLE/RAID0 NODATASUM files always get real direct IO.
  DioWrite nodatasum_single = DioWrite::direct;
  std::string reason; // which rules of the table decided, in sentences
  // The cells a probe measured (apply_probe); the others are the version table's.
  struct Measured
  {
    bool checksummed = false;
    bool checksummed_duplicated = false;
    bool nodatasum_duplicated = false;
    bool nodatasum_single = false;
  } measured;
};

// The table:
// - 968f19c5b1b7 (checksummed inodes fall back): mainline 6.15, backports 6.12.77 and 6.6.130;
//   6.13.y/6.14.y never got it.
// - 7c2830f00c3e (every inode on a duplicated data profile falls back): mainline 7.0, stable
//   6.12.75, 6.18.16, 6.19.6; never 6.6.y.
// - e9b7b9d9e78e (IOMAP_DIO_BOUNCE replaces both fallbacks): mainline 7.3.
DioPolicy dio_policy_for(const KernelVersion& v);

// The cell of the table for one inode (NODATASUM or not) on one data profile (duplicated or not).
DioWrite dio_write_for(const DioPolicy& p, bool nodatasum, bool duplicated);

} // namespace vmcsum::core
