// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum set --nocow|--cow: make the NOCOW/NODATASUM state of files real, existing data included.
// btrfs only lets FS_NOCOW_FL change while a file is empty (and ignores the request silently
// otherwise, docs/kernel-facts.md §3.1), so a non-empty file is rewritten: a verified copy in a new
// inode that had the flag set while empty, swapped in atomically. plan_set() is the decision table
// (pure, unit-tested); set_cow_attribute() gathers the facts, plans and carries the plan out.
#pragma once

#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/sys/temp_file.hpp>
#include <vmcsum/write/guard.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace vmcsum::core {

// The state asked for: nocow = NODATACOW + NODATASUM (what `chattr +C` gives an empty file);
// cow = neither (the btrfs default: copy-on-write with data checksums).
enum class CowTarget { nocow, cow };

// What plan_set() decides for one path.
enum class SetAction {
  flag_set,  // directory or empty file: set the attribute in place, then read it back
  rewrite,   // non-empty regular file: verified copy into a new inode, swapped in atomically
  unchanged, // already in the requested state
  refused,   // see SetPlan::refusals
  skipped,   // inside a -r walk: symlinks, FIFOs, devices... are not acted on
};

// The inputs of the decision table, gathered by set_cow_attribute() (or written by unit tests).
struct SetFacts
{
  std::string kind; // file, directory, symlink, fifo, socket, char-device, block-device, missing
  bool in_walk = false;             // reached by a -r walk rather than named on the command line
  std::optional<std::string> error; // could not be examined at all
  bool symlink_refused = false;     // ... as another user's symlink is on its path
  bool on_btrfs = false;
  std::string fs;                      // filesystem type, for messages
  bool read_only = false;              // read-only mount or read-only subvolume
  std::optional<bool> nocow;           // FS_NOCOW_FL
  std::optional<uint64_t> inode_flags; // BTRFS_INODE_*; nullopt = unknown (needs CAP_SYS_ADMIN)
  std::string inode_flags_unknown;     // why it is unknown
  uint32_t attr_flags = 0;             // FS_IOC_GETFLAGS
  uint64_t size = 0;
  uint64_t allocated = 0; // st_blocks * 512 (uncompressed bytes on btrfs)
  uint64_t nlink = 1;
  std::string compression;        // none, zlib, lzo, zstd (as `show` reports it)
  std::string compression_source; // property, attribute, mount or ""
  uint64_t compressed_bytes = 0;  // FIEMAP_EXTENT_ENCODED
  std::vector<ImageUser> users;
  std::vector<ImageLock> locks;
  std::optional<uint64_t> free_bytes; // statvfs f_bavail * f_frsize (btrfs divides by the profile)
};

struct SetPlan
{
  SetAction action = SetAction::refused;
  std::vector<Refusal> refusals;  // every reason, most fundamental first
  std::vector<std::string> steps; // what will be done, in order (for --dry-run)
  std::vector<std::string> notes; // worth saying even when it goes ahead
  uint64_t needed_bytes = 0;      // free space a rewrite needs: data + space_margin()
};

// Free space kept in reserve on top of the data a rewrite writes (metadata, checksums, log
// tree): 32 MiB plus 1/64 of the data.
uint64_t space_margin(uint64_t data_bytes);

// "cow", "nocow", "nodatasum" (checksums off but still COW: mount -o nodatasum) or "nodatacow"
// for inode flags; the names used in messages and JSON.
std::string cow_state_name(uint64_t inode_flags);
// Whether inode flags already are what `target` asks for.
bool in_target_state(uint64_t inode_flags, CowTarget target);

// The decision table. Pure: everything it needs is in `facts`. `path` is only used in messages.
SetPlan plan_set(const SetFacts& facts, CowTarget target, const std::string& path);

// Temp files are sys::TempFile's (".<name>.vmcsum-tmp.<6 random letters/digits>" beside the
// file, marked and locked); the names are sys::temp_name_for() and friends.
using sys::is_temp_name;
using sys::is_temp_name_for;
using sys::temp_name_for;

struct ByteRange
{
  uint64_t offset = 0;
  uint64_t length = 0;
};
// Adds [offset, offset+length) to ranges sorted by offset, merging it with touching neighbours.
void add_range(std::vector<ByteRange>& ranges, uint64_t offset, uint64_t length);

// A file's state as `before`/`after` report it.
struct SetState
{
  std::optional<bool> nocow;
  std::optional<bool> nodatasum;
  std::optional<uint64_t> inode_flags;
  std::string state; // cow_state_name(), or "unknown"
  uint64_t size = 0;
  uint64_t allocated = 0;
  std::optional<uint64_t> extents;
  std::string compression;
  uint64_t inode = 0;
};

struct SetVerify
{
  std::string hash = "xxh3-128"; // over the data ranges (offset, length, bytes) of each file
  std::string source_digest;
  std::string copy_digest;
  // How the copy was read back from the disk: "page-cache-dropped" (fdatasync, then
  // POSIX_FADV_DONTNEED, checked with mincore: no page of it left in memory) or "o_direct".
  std::string method;
  uint64_t resident_pages = 0; // pages still cached when the read-back started
  bool flags_ok = false;       // GETFLAGS and the inode item (after a commit) show the target
};

struct SetTimings
{
  double copy = 0;   // reading the source, writing and hashing (writeback runs meanwhile)
  double flush = 0;  // the final fdatasync of the copy
  double verify = 0; // reading the copy back from disk
  double total = 0;
};

struct SetEntry
{
  std::string path;                          // as given on the command line or found by -r
  std::optional<std::string> symlink_target; // when `path` is a symlink (acted on its target)
  std::string acted_on;                      // the real path that was changed
  // Its identity, for a fleet to match with other documents: the file as examined, or as it is
  // after the run when rewritten (a rewrite is a new inode). Empty/0: not known.
  std::string fsid;
  uint64_t subvolume_id = 0;
  uint64_t inode = 0;
  std::string kind;
  // flag_set, rewritten, unchanged, refused, skipped or failed. With --dry-run: what would be
  // done (flag_set, rewritten, unchanged, refused or skipped). JSON: outcome_name().
  Outcome action = Outcome::refused;
  std::string code; // refused/failed/skipped: the stable reason code; "" otherwise
  std::string reason;
  std::vector<Refusal> refusals;
  std::optional<SetState> before;
  std::optional<SetState> after;
  uint64_t bytes_copied = 0;
  uint64_t data_ranges = 0;
  std::vector<std::string> steps; // the plan
  std::vector<std::string> notes;
  std::vector<ImageUser> users;
  std::vector<ImageLock> locks;
  std::vector<ByteRange> unreadable; // source ranges that read as EIO (at most 1000 listed)
  uint64_t unreadable_bytes = 0;
  std::vector<std::string> xattrs_copied;
  std::vector<std::string> xattrs_dropped;
  std::optional<SetVerify> verify;
  SetTimings seconds;
};

// A temp file of an interrupted run, found beside a target (or inside a -r tree).
struct SetLeftover
{
  std::string path;
  bool removed = false;
  std::string error; // why it was kept (another vmcsum holds it, or the unlink failed)
};

struct SetOptions
{
  std::vector<std::string> paths;
  CowTarget target = CowTarget::nocow;
  bool recursive = false;
  bool dry_run = false;
  std::string proc_dir = "/proc"; // where to look for processes that have files open
  std::string mountinfo = "/proc/self/mountinfo";
  // (st_dev, st_ino) each path must still name, when the caller held the file (repair
  // --then-nocow); empty: no expectation. A path naming another file is refused (changed).
  std::vector<std::pair<uint64_t, uint64_t>> expected;
};

struct SetProgress
{
  std::string path;
  std::string phase; // copy, flush, verify
  uint64_t done = 0;
  uint64_t total = 0;
};

struct SetResult
{
  std::vector<SetEntry> files;
  std::vector<SetLeftover> leftovers;
  bool interrupted = false;
};

// Runs `vmcsum set`. A problem with one path never throws: it becomes that entry's refusal or
// failure and the others go on. `cancel` is polled between chunks; once it is true, the file
// being rewritten is abandoned (its temp file removed, the original untouched) and the paths not
// yet done are reported as skipped (code "interrupted"). SIGIO is ignored while it runs: the
// kernel sends it when someone breaks the write lease held on a file being rewritten.
SetResult set_cow_attribute(const SetOptions& opts,
                            const std::function<void(const SetProgress&)>& progress,
                            const std::atomic<bool>& cancel);

} // namespace vmcsum::core
