// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The backup `vmcsum repair` writes before its first write to an image, and `--undo` reads.
//
// Layout (all integers little-endian):
//   "vmcsum-repair-backup 1\n"
//   one line of JSON: the header (path, fsid, subvolume, inode, size, mtime, sectorsize,
//     csum_type, created, ranges)
//   records, each: "VMCR", u64 file offset, u64 logical, u32 length, u32 mirror (0: the bytes
//     as the filesystem read them; N: device copy N of a bad sector), u8 flags (1: the copy
//     the repair writes back), u8 csum length, u16 0, 32 bytes expected csum (bad sectors),
//     u64 XXH64 of the data, then the data
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

struct BackupRecord
{
  static constexpr uint8_t k_chosen = 1;
  uint64_t offset = 0;
  uint64_t logical = 0;
  uint32_t mirror = 0;
  uint8_t flags = 0;
  std::vector<uint8_t> expected_csum;
  std::vector<uint8_t> data;
  bool chosen() const { return (flags & k_chosen) != 0; }
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
  bool record_inside(uint64_t offset, uint64_t length) const;
  std::vector<std::pair<uint64_t, uint64_t>> m_sorted_ranges;
  std::string m_path;
  std::FILE* m_file = nullptr;
  BackupHeader m_header;
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
