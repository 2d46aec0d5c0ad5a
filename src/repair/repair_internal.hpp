// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What repair and undo share inside src/repair/: the stop type that ends the work on one file,
// descriptor helpers, the applier that writes (or compares) a backup's bytes, and the O_DIRECT
// read-back. Not a public header.
#pragma once

#include <vmcsum/host/rate_limiter.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/repair/repair_backup.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/lease.hpp>
#include <vmcsum/write/guard.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/stat.h>

namespace vmcsum::core::repair_detail {

constexpr size_t k_chunk = 4u << 20;

// Ends the work on one file: the one stop type of image-writing commands (write/guard.hpp:
// refused, nothing changed; failed, stopped midway), its errno rule included (stop_on_errno:
// EROFS refused "read-only", ENOSPC/EDQUOT failed "no-space").
using Stop = WriteStop;

std::string utc_stamp(); // 20261124T190000Z
std::string utc_iso();   // 2026-11-24T19:00:00Z
std::vector<uint8_t> from_hex(const std::string& hex);

void pwrite_all(int fd, const uint8_t* buf, size_t len, uint64_t off, const std::string& path);
// pread of exactly `len` bytes; false on EIO, a Stop for other errors or a short file.
bool pread_full(int fd, uint8_t* buf, size_t len, uint64_t off, const std::string& path);

// Opens the file behind the open descriptor `fd` anew with `flags` (through /proc/self/fd), and
// checks it is the same inode as `want`: the path is never resolved again, so what is written
// or read back is the inode that was examined.
sys::Fd reopen(int fd, int flags, const struct stat& want, const std::string& display);

// The image named `path` (absolute, canonical), opened read-only without blocking and without
// following a symlink anywhere on the path, and refused unless it is a regular file (a FIFO, device
// or socket is never read or opened for writing). `st` receives its fstat.
// `dir_st`, when given, receives the fstat of the directory it was found in.
sys::Fd open_regular(const std::string& path, struct stat& st, struct stat* dir_st = nullptr);

// The digest (sys::Hasher) of what was written, per rewritten range: what readback_hash gives
// for each range read back (Readback::range_digests), so the two compare as strings.
class Digests
{
public:
  explicit Digests(size_t n);
  void update(size_t i, const uint8_t* p, size_t n);
  std::string digest(size_t i) const { return m_states[i]->hex(); }

private:
  std::vector<std::unique_ptr<sys::Hasher>> m_states;
};

// The record of a group (all records at one offset: the device copies of one bad sector) whose
// bytes go to the file: copy `prefer` when the backup has it, else the one flagged as chosen
// (what the repair wrote), else the first. Compare and write both use it, so the bytes written
// are the bytes compared (issue 12 #2).
const BackupRecord& pick_record(const std::vector<BackupRecord>& group,
                                std::optional<unsigned> prefer);

// Each hashed stretch as the repair's backup phase read it, by offset: the SHA-256 it recorded
// and an XXH3-128 (sys::Hasher) of the same bytes. The write phase of the same run checks the
// stretch it reads again against the XXH3 rather than computing its SHA-256 a second time
// (issue 16: SHA-256 costs about 39 ms per 64 MiB here, XXH3 a tenth of that), and the SHA-256
// kept here against the one in the backup file, so a repair that went through still proves the
// backup names the bytes it left (what undo checks). The XXH3 guards against an accident, not
// a forger: no writer has the image open between the two phases (users check, lease). Every
// run writes its backup before its write phase, so these are always there; a stretch missing
// here (a bug) is checked against the file's SHA-256. Undo does the same between its compare
// and its write (BackupApplier::matched_stretches).
struct StretchDigest
{
  uint32_t length = 0;
  std::string xxh3;
  std::vector<uint8_t> sha256;
};
using StretchDigests = std::map<uint64_t, StretchDigest>;
std::string stretch_xxh3(const uint8_t* data, size_t length);

// What BackupApplier does with each record of a backup.
enum class ApplyMode {
  compare,        // check the file holds each record's bytes (or a hashed stretch's digest)
  compare_hashed, // check the hashed stretches only (undo, once a record differed: whether the
                  // backup could restore at all decides before whether --force is needed)
  rewrite,        // repair: write the records' bytes; read each hashed stretch, check its
                  // digest and write the same bytes back
  restore,        // undo: write the records' bytes; read each hashed stretch and check its
                  // digest (the repair left those bytes as they were: nothing to write)
};

// Writes the bytes of a backup back at their offsets (or compares them with the file): records
// read through the filesystem as they are, one record per bad sector (pick_record). Feeds the
// bytes the ranges hold after it, in order, to the per-range digests.
class BackupApplier
{
public:
  BackupApplier(int fd, const std::string& path, const std::vector<RewriteRange>& ranges,
                std::optional<unsigned> prefer, RateLimiter& limiter,
                std::function<void(uint64_t)> tick, std::function<void()> check);
  // Compare modes return false at the first difference (or EIO), which they describe in
  // `difference`; writing modes throw a Stop when a hashed stretch is not what was backed up.
  bool run(BackupReader& reader, ApplyMode mode, std::string& difference);
  // Rewrite and restore: check the stretches found in `known` (kept by the caller) against its
  // XXH3 and recorded SHA-256 rather than computing their SHA-256 again (StretchDigest).
  void check_stretches_against(const StretchDigests& known) { m_known = &known; }
  // Compare modes: each hashed stretch found to match its SHA-256, with the XXH3 of the bytes
  // read, for undo's write phase (the same reasoning as repair's: users checked, lease held).
  const StretchDigests& matched_stretches() const { return m_matched; }
  // The last difference was in a hashed stretch: bytes the backup has no copy of.
  bool difference_hashed() const { return m_difference_hashed; }
  const Digests& digests() const { return m_digests; }
  Digests take_digests() { return std::move(m_digests); }

private:
  bool handle(const BackupRecord& r, ApplyMode mode, std::string& difference);
  bool handle_hashed(const BackupRecord& r, ApplyMode mode, std::string& difference);
  bool stretch_matches(const BackupRecord& r, const uint8_t* data, size_t len) const;
  int m_fd;
  const std::string& m_path;
  const std::vector<RewriteRange>& m_ranges;
  std::optional<unsigned> m_prefer;
  RateLimiter& m_limiter;
  std::function<void(uint64_t)> m_tick;
  std::function<void()> m_check;
  Digests m_digests;
  std::vector<uint8_t> m_cmp;
  bool m_difference_hashed = false;
  const StretchDigests* m_known = nullptr;
  StretchDigests m_matched;
};

// Reads each range back with O_DIRECT (sys::readback_hash) through a descriptor reopened from
// `fd` (same inode), so btrfs verifies every checksum and no page cache answers for the disk;
// compares with the digests of what was written. Each range is counted against `limiter` as it
// is read.
RepairVerify verify_ranges(int fd, const struct stat& st, const std::string& path,
                           const std::vector<RewriteRange>& ranges, const Digests& expected,
                           uint64_t size, RateLimiter& limiter, std::vector<std::string>& notes);

// Takes the write lease on `fd` into `lease` (sys::Lease: given up the moment another process
// opens the image): a Stop "in-use" when another process has the file open (EAGAIN); when the
// kernel cannot give one for another reason, a note says the writes go on without it.
void take_write_lease(std::optional<sys::Lease>& lease, int fd, std::vector<std::string>& notes);

// Drops the pending suffix of a backup whose repair is verified; returns its path now.
std::string finalize_backup(const std::string& pending_path);

// One line in the system journal for every image repair or undo wrote to. Best effort.
void journal_record(const char* what, const RepairEntry& e);

} // namespace vmcsum::core::repair_detail
