// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What scrub and repair remember per filesystem, in <state>/scrub/<fsid>.json (issue 19, "No
// self-inflicted alarms"):
//  * kernel confirmations: bad sectors the kernel already failed on a read through btrfs. A
//    later scrub that finds the same per-copy facts does not read them through btrfs again, so
//    known damage costs no new corruption_errs in `btrfs device stats` and no csum-failed lines;
//  * outcomes per image: the last whole-file scrub (clean or not) and the last verified repair,
//    which audit weighs against the kernel log's checksum events;
//  * read windows: when and where vmcsum's own kernel pass read through btrfs, so that the
//    kernel log events those reads caused are marked, not counted as alarms.
// Parsing and the decisions are pure functions (unit tests); load/save use durable_file.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmcsum::core {

// A bad sector the kernel failed (or not) on a read through btrfs.
struct KernelConfirmation
{
  uint64_t subvolume = 0;
  uint64_t inode = 0;
  uint64_t offset = 0; // file offset (the start of the file range of a compressed extent)
  uint64_t length = 0;
  uint64_t logical = 0;
  std::string expected_csum;
  std::vector<std::string> copy_csums; // per copy in mirror order; "" = the read failed
  bool kernel_eio = false;
  uint64_t confirmed_at_us = 0; // microseconds since the epoch
};

struct ImageOutcome
{
  uint64_t subvolume = 0;
  uint64_t inode = 0;
  std::string path;                       // as last seen (for people; matching is by inode)
  std::optional<uint64_t> scrubbed_at_us; // last whole-file scrub
  bool clean = false;                     // that scrub found nothing bad
  std::optional<uint64_t> repaired_at_us; // last verified repair
};

// When an image was last made whole, and by what ("repair": its last verified repair, unless a
// whole-file scrub found it bad since; "scrub": its last clean whole-file scrub), the later of
// the two. A kernel log event of that image before then is of damage since mended: audit and
// scrub --history weigh the log against it, so that an alarm ends with the repair, not with the
// journal's rotation.
struct Healed
{
  uint64_t at_us = 0;
  std::string by;
};
std::optional<Healed> healed_of(const ImageOutcome& o);

// One kernel pass: what vmcsum read through btrfs, and when.
struct ReadWindow
{
  std::string boot_id;
  int64_t pid = 0;
  uint64_t mono_start_us = 0, mono_end_us = 0; // CLOCK_MONOTONIC
  uint64_t real_start_us = 0, real_end_us = 0; // CLOCK_REALTIME, since the epoch
  std::string fsid;
  std::vector<std::string> devices; // device basenames ("loop3"), as the kernel log names them
  uint64_t subvolume = 0;
  uint64_t inode = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges; // file (offset, length) read
};

struct ScrubState
{
  std::string fsid;
  std::vector<KernelConfirmation> confirmations;
  std::vector<ImageOutcome> outcomes;
  std::vector<ReadWindow> windows; // oldest first; the newest k_max_windows are kept
};

inline constexpr size_t k_max_windows = 4096; // ~300 bytes each
inline constexpr size_t k_max_state_bytes = 64ull << 20;

// "vmcsum.scrub-state/1" JSON. parse throws Error{internal} on anything malformed (wrong
// schema, wrong types, a missing key): a damaged state file is reported, never half-trusted.
ScrubState parse_scrub_state(std::string_view text);
std::string dump_scrub_state(const ScrubState& s);

// <state_dir>/scrub/<fsid>.json; an empty state (fsid set) when there is none.
ScrubState load_scrub_state(const std::string& state_dir, const std::string& fsid);
// Every state file of the state directory (unreadable ones become notes).
std::vector<ScrubState> load_all_scrub_states(const std::string& state_dir,
                                              std::vector<std::string>& notes);

// Merges `update` into the file on disk under an exclusive lock (two runs at once lose
// nothing): its confirmations replace those of the same (subvolume, inode) that it names in
// `replaced_inodes`, its outcomes replace those of the same inode (repaired_at_us kept unless
// set), its windows are appended (the oldest dropped beyond k_max_windows). Returns a note
// when the file would have grown past k_max_state_bytes and its oldest entries were dropped.
std::optional<std::string>
merge_scrub_state(const std::string& state_dir, const ScrubState& update,
                  const std::vector<std::pair<uint64_t, uint64_t>>& replaced_inodes);

// What dump_scrub_state_within() dropped.
struct StateTrim
{
  size_t windows = 0, confirmations = 0, outcomes = 0;
};
// The state's text, at most `limit` bytes: the oldest windows, then confirmations, then
// outcomes are dropped from `s` until it fits (counted in `trim`).
std::string dump_scrub_state_within(ScrubState& s, size_t limit, StateTrim& trim);

// A window of reads through btrfs that this process starts now, of inode `inode` in
// `subvolume` of filesystem `fsid`; `device_paths` are the filesystem's devices (their names and
// the names they resolve to are kept, as the kernel log names a device; none: any device).
// close_read_window() sets its end; the caller adds the file ranges read.
ReadWindow open_read_window(const std::string& fsid, const std::vector<std::string>& device_paths,
                            uint64_t subvolume, uint64_t inode);
void close_read_window(ReadWindow& w);
// Saves read windows of a run (repair's reads through btrfs), so that the kernel log lines they
// cause are marked caused_by_vmcsum; a note as merge_scrub_state() gives.
std::optional<std::string> record_read_windows(const std::string& state_dir,
                                               const std::string& fsid,
                                               std::vector<ReadWindow> windows);

// Records a verified repair of an image; a note as merge_scrub_state() gives.
std::optional<std::string> record_repair(const std::string& state_dir, const std::string& fsid,
                                         uint64_t subvolume, uint64_t inode,
                                         const std::string& path, uint64_t at_us);

// Whether a stored confirmation still holds for a bad sector seen now: same place, same
// expected checksum, the same bytes on every copy (their checksums), and still no good copy.
bool confirmation_holds(const KernelConfirmation& c, uint64_t logical,
                        const std::string& expected_csum,
                        const std::vector<std::string>& copy_csums_now, bool some_copy_matches);

// The file ranges of `spans` minus `skip` (both (offset, length); skip need not be sorted).
std::vector<std::pair<uint64_t, uint64_t>>
subtract_ranges(std::vector<std::pair<uint64_t, uint64_t>> spans,
                std::vector<std::pair<uint64_t, uint64_t>> skip);

// Facts of one kernel log event for window matching.
struct EventWhen
{
  std::string device; // "loop3"
  std::optional<int64_t> root;
  std::optional<uint64_t> ino;
  std::optional<uint64_t> offset;
  std::optional<std::string> boot_id;
  std::optional<uint64_t> mono_us; // kmsg: since boot (this boot only)
  std::optional<uint64_t> real_us; // since the epoch
};

// Slack around a window: printk stamps with local_clock(), not exactly CLOCK_MONOTONIC.
inline constexpr uint64_t k_window_slack_us = 1000000;

// Whether the event was caused by the read window: same device (when the window names them),
// root and inode, an offset inside a range read, and a time inside the window (monotonic when
// both are of one boot, else realtime), with k_window_slack_us either side.
bool event_in_window(const EventWhen& e, const ReadWindow& w);

} // namespace vmcsum::core
