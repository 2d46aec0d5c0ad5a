// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The backup `vmcsum repair` writes before its first write to an image, and `--undo` reads.
//
// Layout (all integers little-endian):
//   "vmcsum-repair-backup 2\n" (format 2, written since issue 16; format 1 is still read)
//   one line of JSON: the header (path, fsid, subvolume, inode, size, mtime, sectorsize,
//     csum_type, created, ranges)
//   records, each either
//     "VMCR", u64 file offset, u64 logical, u32 length, u32 mirror (N: device copy N of a bad
//     sector; 0: the bytes as the filesystem read them, format 1 only), u8 flags (1: the copy
//     the repair writes back), u8 csum length, u16 0, 32 bytes expected csum, u64 XXH64 of the
//     data, then the data
//   or (format 2) a hashed stretch: "VMCH", u64 file offset, u32 length (at most
//     k_max_hashed), u32 algorithm (1: SHA-256), 32 bytes digest, u64 XXH64 of the 52 bytes
//     before it. Outside the bad sectors a repair writes back the very bytes the file holds
//     (so that btrfs puts them in a new extent), so those bytes are the same before and after
//     it: the backup keeps their digest, which undo checks before writing anything (and the
//     write phase, through a faster digest of the same read: StretchDigest), instead of a second
//     copy of every byte (format 1).
//   the trailer: "VMCE", u64 record count, u64 XXH64 over every record's XXH64
// A file without its trailer is incomplete and is never used. Every record must lie inside one of
// the header's ranges (the reader refuses the file otherwise: undo never writes elsewhere).
//
// Binding (issue 12 #2): the writer hashes the whole file (SHA-256) as it writes it, and repair
// records that digest with the target's identity in the state directory (backup_binding.hpp)
// before its first write to the image; undo restores only a backup whose digest has a record.
#pragma once

#include <vmcsum/sys/temp_file.hpp>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmcsum::core {

struct BackupHeader
{
  std::string path;
  std::string fsid;
  uint64_t subvolume = 0;
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  int64_t mtime_nsec = 0;
  uint32_t sectorsize = 4096;
  std::string csum_type;
  std::string created;                               // UTC, ISO 8601
  std::vector<std::pair<uint64_t, uint64_t>> ranges; // file ranges the repair rewrites
};

// A hashed stretch is at most one read chunk: the write phase holds it in one buffer while it
// checks the digest, before writing any of it.
constexpr uint32_t k_max_hashed = 4u << 20;

// The digest a hashed stretch keeps (SHA-256): what the writer records and what undo checks the
// file's bytes against.
std::vector<uint8_t> stretch_digest(const uint8_t* data, size_t length);

struct BackupRecord
{
  static constexpr uint8_t k_chosen = 1;
  uint64_t offset = 0;
  uint64_t logical = 0;
  uint32_t length = 0; // bytes of the file it covers (data.size() for a record with data)
  uint32_t mirror = 0;
  uint8_t flags = 0;
  std::vector<uint8_t> expected_csum;
  std::vector<uint8_t> data;
  std::vector<uint8_t> sha256; // a hashed stretch ("VMCH"): the digest of its bytes, no data
  bool chosen() const { return (flags & k_chosen) != 0; }
  bool hashed() const { return !sha256.empty(); }
};

std::string encode_backup_header(const BackupHeader& h);
// Throws Error{invalid input as Errc::usage} for a line that is not a header.
BackupHeader decode_backup_header(const std::string& json_line);

// Writes a backup under a temp name in `dir`; commit() makes it durable under `final_name`
// (fsync, rename, fsync of the directory). Destroyed without commit(), the temp file goes.
class BackupWriter
{
public:
  BackupWriter(const std::string& dir, const BackupHeader& header);
  ~BackupWriter();
  BackupWriter(const BackupWriter&) = delete;
  BackupWriter& operator=(const BackupWriter&) = delete;

  void add(const BackupRecord& r);
  void add(uint64_t offset, uint64_t logical, uint32_t mirror, uint8_t flags,
           const std::vector<uint8_t>& csum, const uint8_t* data, uint32_t length);
  // A stretch the repair writes back unchanged: its SHA-256 only (length <= k_max_hashed).
  // Returns the digest it recorded (stretch_digest).
  std::vector<uint8_t> add_hashed(uint64_t offset, const uint8_t* data, uint32_t length);
  uint64_t bytes() const { return m_bytes; }
  // Writes the trailer, fsyncs, calls `before_rename` with the file's SHA-256 (lower-case hex:
  // repair records the binding there, so a backup never appears under its name unrecorded),
  // then renames it into place. Returns the path it now has.
  std::string commit(const std::string& final_name,
                     const std::function<void(const std::string& sha256)>& before_rename = {});
  // Lower-case hex SHA-256 of every byte of the file; valid after commit().
  const std::string& sha256() const { return m_sha256; }

private:
  void write(const void* p, size_t n);
  struct Sha;
  std::unique_ptr<Sha> m_sha;
  std::string m_sha256;
  std::string m_dir;
  std::unique_ptr<sys::TempFile> m_tmp; // unlinked by its destructor unless committed
  uint64_t m_count = 0;
  uint64_t m_bytes = 0;
  uint64_t m_chain = 0;
};

// Reads a backup written by BackupWriter, record by record (bounded memory). The constructor
// checks the header; next() checks each record's hash, and the trailer at the end. Throws
// Error{usage} for a file that is not a complete, intact backup.
class BackupReader
{
public:
  explicit BackupReader(const std::string& path);
  ~BackupReader();
  BackupReader(const BackupReader&) = delete;
  BackupReader& operator=(const BackupReader&) = delete;

  const BackupHeader& header() const { return m_header; }
  int format() const { return m_format; } // 1 or 2
  // false at the trailer (verified).
  bool next(BackupRecord& r);
  // Reads every record once to check the file is complete, then rewinds.
  void verify_complete();
  // Lower-case hex SHA-256 of the whole file, read through the descriptor the reader holds (so
  // the bytes hashed are the bytes later read, given the file's owner is us: owned_by_us()).
  std::string sha256();
  // The file is ours (effective uid) and nobody else can write it: no other user can change it
  // between the hash and the reads.
  bool owned_by_us() const;

private:
  void rewind();
  // `to_sector`: a device copy may reach the range's end rounded up to a whole sector.
  bool record_inside(uint64_t offset, uint64_t length, bool to_sector) const;
  void read_hashed(BackupRecord& r);
  std::vector<std::pair<uint64_t, uint64_t>> m_sorted_ranges;
  std::string m_path;
  std::FILE* m_file = nullptr;
  BackupHeader m_header;
  int m_format = 0;
  long m_records_start = 0;
  uint64_t m_count = 0;
  uint64_t m_chain = 0;
};

// Removes the temp files of backups that a killed run never finished: only temps vmcsum marked
// as its own and no running vmcsum holds locked (sys::remove_stale_temps; never an image merely
// named like one); returns their paths.
std::vector<std::string> remove_stale_backup_temps(const std::string& dir);

// "<name>.<inode>.<YYYYmmddTHHMMSSZ>.vmcsum-backup"; the pending suffix marks a repair not yet
// verified (a rerun resumes its ranges).
constexpr const char* k_backup_suffix = ".vmcsum-backup";
constexpr const char* k_pending_suffix = ".pending";
std::string backup_file_name(const std::string& image_name, uint64_t inode,
                             const std::string& utc_stamp);

} // namespace vmcsum::core
