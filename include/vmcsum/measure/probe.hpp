// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum probe: what an O_DIRECT write really does on this kernel and filesystem, measured in
// unnamed scratch files instead of read from the version table (kernel_policy.hpp). Two
// methods, both from docs/kernel-facts.md:
//  - tracefs (§1.5): the btrfs:btrfs_ordered_extent_add tracepoint has DIRECT in its flags for
//    a real direct write. Recorded in a private tracefs instance, filtered on the scratch
//    inodes, removed afterwards; the global trace settings are never touched.
//  - race (§5, docs/reproducing-the-bug.md): write a checksummed scratch file with O_DIRECT from a
//    buffer another thread keeps changing, read it back with O_DIRECT. EIO (a false checksum
//    mismatch) means zero-copy writes; none, although the buffer changed during the writes,
//    means the kernel copied the data first. NOCOW files have no checksums, so this method
//    cannot tell anything about them.
// Neither method tells 7.3's bounce buffers (e9b7b9d9e78e) apart from everything else: a
// bounced write probably still makes DIRECT ordered extents (docs/kernel-facts.md §1.4,
// unverified), and it copies the data like the buffered fallback does, so the race finds nothing
// either. Where the version table says bounce for a cell, the two answers are combined
// (combine_with_table) and the method says so ("tracefs+version-table", "race+version-table").
#pragma once

#include <vmcsum/host/kernel_policy.hpp>
#include <vmcsum/measure/progress.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmcsum::core {

// One btrfs:btrfs_ordered_extent_add line of a tracefs trace file.
struct OrderedExtentEvent
{
  std::string fsid; // lower case, as %pU prints it; "" when the line has none
  uint64_t root = 0;
  uint64_t ino = 0;
  uint64_t file_offset = 0;
  uint64_t len = 0;
  std::vector<std::string> flags; // "REGULAR", "NOCOW", "DIRECT", ... (__print_flags names)

  bool has_flag(std::string_view name) const;
};

// Parses one line of a trace file; nullopt for comments, other events and anything malformed.
// Format (include/trace/events/btrfs.h, btrfs__ordered_extent): "... btrfs_ordered_extent_add:
// <fsid>: root=5(FS_TREE) ino=257 file_offset=0 start=... len=65536 ... flags=REGULAR|DIRECT ..."
std::optional<OrderedExtentEvent> parse_ordered_extent_line(std::string_view line);

// A measured answer for one kind of file, with the sentence that justifies it.
struct Verdict
{
  DioWrite write = DioWrite::unknown;
  std::string evidence;
  bool table_decided = false; // the version table settled what the measurement could not
};

// The verdict from the ordered extents traced for one scratch inode after `writes` O_DIRECT
// writes of `write_size` bytes: direct when every one is DIRECT, buffered-fallback when none
// is, unknown when they are mixed or none was recorded. `what` names the file in the evidence.
Verdict judge_trace(const std::vector<OrderedExtentEvent>& events, const std::string& what,
                    unsigned writes, uint64_t write_size);

// What the race method observed on a checksummed scratch file.
struct RaceObservation
{
  uint64_t writes = 0;                // O_DIRECT writes issued (over every pass)
  uint64_t per_pass = 0;              // writes of one pass over the file (0: writes)
  uint64_t write_size = 0;            // bytes each
  uint64_t raced_writes = 0;          // writes during which the buffer changed
  uint64_t bytes_read = 0;            // read back with O_DIRECT before the first EIO (or all of it)
  std::optional<uint64_t> eio_offset; // offset of the first read that failed with EIO
};

// direct when a read failed with EIO; buffered-fallback when everything read back although at
// least half a pass's worth of writes raced with changes of their buffer (the kernel copied the
// data: a buffered fallback, or bounce buffers); unknown otherwise.
Verdict judge_race(const RaceObservation& obs);

// A measured verdict read together with the version table's answer for the same cell. The
// tracepoint shows DIRECT for zero-copy and (probably) for bounced writes; the race sees a copy
// both for the buffered fallback and for bounce buffers. So where the table says bounce, a
// traced DIRECT (`traced`) or a raced copy (!`traced`) becomes bounce, with table_decided set
// and a sentence saying why; any other measurement is returned as it is (a traced answer that
// the table says cannot be bounce gets a sentence saying so).
Verdict combine_with_table(const Verdict& measured, DioWrite table, bool traced,
                           const std::string& release);

enum class ProbeMethod { automatic, tracefs, race };
std::string probe_method_name(ProbeMethod m); // "auto", "tracefs", "race"

// The answer for one filesystem.
struct FsProbe
{
  std::vector<std::string> paths; // the paths given for it
  std::string scratch_dir;        // where the unnamed scratch files were made
  std::string mount;
  std::string fsid;
  std::vector<std::string> data_profiles; // current data profiles, largest first
  uint32_t sector_size = 0;
  DioWrite checksummed = DioWrite::unknown; // O_DIRECT write to a file with data checksums
  DioWrite nocow = DioWrite::unknown;       // ... to a NOCOW (NODATASUM) file, this profile
  std::string method = "none"; // "tracefs", "race", "tracefs+version-table", "race+version-table"
                               // (the table told bounce from what was measured) or "none"
  std::vector<std::string> evidence;          // what was observed, one sentence each
  std::map<std::string, std::string> unknown; // "checksummed"/"nocow" -> why not measured
  // The version table's cells for this filesystem's data profile, to compare and combine.
  DioWrite table_checksummed = DioWrite::unknown;
  DioWrite table_nocow = DioWrite::unknown;
  std::string kernel_release; // the release the table was read for
  std::vector<std::string> notes;
  int interrupted = 0; // the signal that stopped the probe, 0 if none
};

struct ProbeOptions
{
  std::vector<std::string> paths; // empty: every mounted btrfs holding VM images (as audit finds)
  ProbeMethod method = ProbeMethod::automatic;
  uint64_t race_bytes = 8 << 20;      // written by the race method
  uint64_t race_write_size = 1 << 20; // per O_DIRECT write (docs/reproducing-the-bug.md: 1 MiB
                                      // writes race reliably even on a busy one-CPU guest)
  std::string mountinfo = "/proc/self/mountinfo";
  std::optional<std::string> kernel_release; // default: uname -r (only for the table answers)
};

struct ProbeProblem
{
  std::string path;
  std::string reason;
  bool not_btrfs = false; // a warning rather than a failure
};

struct ProbeResult
{
  std::string kernel_release;
  DioPolicy version_table;
  std::vector<FsProbe> filesystems;
  std::vector<ProbeProblem> problems;
  std::vector<std::string> notes;
  int interrupted = 0; // the signal that stopped the run, 0 if none
};

// Probes each filesystem once. Blocks SIGINT/SIGTERM/SIGHUP/SIGQUIT while something needs
// cleaning up (see sys::DeferSignals): an interrupted probe removes its tracefs instance and
// scratch files first, then the signal takes effect. Throws only when nothing can be probed.
// `progress` hears of each phase ("trace", "race write", "race write, pass 2", "read back")
// with its bytes done and total; "trace" is reported before the scratch files are made.
ProbeResult probe(const ProbeOptions& opts, const MeasureProgressFn& progress = {});

// Probes the btrfs filesystem holding `path` (a file or a directory; the scratch files go into
// the directory). Throws Error when `path` is missing or not on btrfs.
FsProbe probe_filesystem(const std::string& path, const ProbeOptions& opts,
                         const MeasureProgressFn& progress = {});

// The version table's cell for a checksummed (nodatasum false) or NODATASUM file on a
// filesystem with these data profiles (any profile with copies counts). With no profile known,
// the cell only when single and duplicated profiles give the same answer, else unknown.
DioWrite table_answer(const DioPolicy& policy, bool nodatasum,
                      const std::vector<std::string>& profiles);
DioWrite table_nocow_answer(const DioPolicy& policy, const std::vector<std::string>& profiles);

// Puts what `fs` measured into `policy` (the profile decides which cell, single or duplicated,
// each answer sets; without a known profile nothing can be placed) and says so in its reason.
// Returns false when nothing was placed.
bool apply_probe(DioPolicy& policy, const FsProbe& fs);

// One line for notes and logs: "probe (tracefs) of /mnt: checksummed buffered-fallback, ...".
std::string probe_summary(const FsProbe& fs);

} // namespace vmcsum::core
