// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Which kernel wrote an extent. Every btrfs file extent item carries the generation (transid)
// that wrote it, and nothing on disk says which kernel ran then. So vmcsum keeps, per
// filesystem, a record of (superblock generation, kernel release, boot id) taken at every boot
// and shutdown (vmcsum-record.service) and whenever vmcsum runs. An extent whose generation
// lies between two records of one boot was written by that boot's kernel; any other generation
// lies in a gap of the record, and its kernel is unknown (a filesystem from elsewhere has only
// gaps). The man page explains it under KERNEL RECORD.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmcsum::core {

struct RecordEntry
{
  // The filesystem's generation after a commit (BTRFS_IOC_SYNC, then BTRFS_IOC_FS_INFO): every
  // extent of generation <= this one was written before the entry was taken.
  uint64_t generation = 0;
  std::string release; // uname -r
  std::string boot_id; // /proc/sys/kernel/random/boot_id, without dashes
  int64_t time_us = 0; // CLOCK_REALTIME
  std::string source;  // "boot", "shutdown", "run"
};

// The write window of an extent generation.
struct WriteWindow
{
  bool known = false;                 // inside one boot, between two entries
  std::string id;                     // "boot:<boot id>" or "gap:<n>": equal ids, same window
  std::optional<std::string> release; // the kernel that wrote it (known windows)
};

class KernelRecord
{
public:
  // The text form: a header line "vmcsum-kernel-record 1 <fsid>", then one entry a line
  // "<generation> <boot id> <time_us> <source> <release>". Throws Error{internal} on anything
  // else, naming the line.
  static KernelRecord parse(std::string_view text, const std::string& fsid);
  std::string format() const;

  const std::string& fsid() const { return m_fsid; }
  const std::vector<RecordEntry>& entries() const { return m_entries; }

  // Adds an entry. Per boot only the first entry and the latest one are kept (the kernel cannot
  // change within a boot), so the record grows by at most two lines a boot. An entry whose
  // generation is lower than the last one's (the filesystem was restored or is another one
  // with the same fsid) starts the record afresh, and restarted() says so.
  void add(RecordEntry e);

  // Why the record started afresh while it was loaded or added to (its entries before are
  // gone, so the writes they dated fall in a gap): empty when it did not.
  const std::optional<std::string>& restarted() const { return m_restarted; }
  void set_restarted(std::string why) { m_restarted = std::move(why); }

  // The window of an extent written at `generation`, as seen from boot `current_boot`.
  WriteWindow window_of(uint64_t generation, const std::string& current_boot) const;

private:
  explicit KernelRecord(std::string fsid)
    : m_fsid(std::move(fsid))
  {
  }
  std::string m_fsid;
  std::vector<RecordEntry> m_entries;
  std::optional<std::string> m_restarted;
  friend KernelRecord empty_record(const std::string& fsid);
};

KernelRecord empty_record(const std::string& fsid);

// Whether s can be a word of a record line (a release, a source): non-empty printable ASCII
// without blanks, as `uname -r` always is. parse() refuses a line with any other word, so
// add() must never be given one: the record would be unreadable and start afresh next time.
bool record_word_ok(std::string_view s);

// This boot's id (32 hex digits) and kernel release.
std::string current_boot_id();
std::string current_release();

// Loads <state_dir>/generations/<fsid> (an empty record when there is none).
KernelRecord load_record(const std::string& state_dir, const std::string& fsid);

// Commits the filesystem of `fd` (BTRFS_IOC_SYNC), reads its generation and adds an entry for
// this boot to its record, saved durably. Returns the record; its restarted() says why it
// started afresh (a saved record that cannot be read is replaced). Throws vmcsum::Error.
// `release` overrides uname -r (tests record as if another kernel ran).
KernelRecord record_now(int fd, const std::string& path, const std::string& state_dir,
                        const std::string& source,
                        const std::optional<std::string>& release = std::nullopt);

} // namespace vmcsum::core

namespace vmcsum::core {

struct RecordedFs
{
  std::string fsid;
  std::string mount_point;
  std::optional<uint64_t> generation;
  size_t entries = 0;               // entries of its record after this one
  std::optional<std::string> note;  // why its record started afresh (KernelRecord::restarted)
  std::optional<std::string> error; // why nothing was recorded for it
};

struct RecordResult
{
  std::string release;
  std::string boot_id;
  std::vector<RecordedFs> filesystems;
};

// vmcsum record: an entry for each mounted btrfs (each filesystem once, by fsid), or for the
// filesystems holding `paths`. Per-filesystem failures are data.
RecordResult record_filesystems(const std::vector<std::string>& paths, const std::string& state_dir,
                                const std::string& source,
                                const std::optional<std::string>& release = std::nullopt,
                                const std::string& mountinfo = "/proc/self/mountinfo");

} // namespace vmcsum::core
