// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum repair: make false checksum mismatches readable again, online, per image, without
// losing a byte. Each damaged extent's whole file range is rewritten through the filesystem
// (good sectors as read, bad ones from the chosen device copy) so btrfs stores fresh checksums
// and frees the old extent; a backup of every copy of each bad sector, and of the digest of
// every other byte it writes back unchanged, is on disk first.
#pragma once

#include <vmcsum/scrub/scrub.hpp>
#include <vmcsum/set/rewrite.hpp>
#include <vmcsum/write/guard.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace vmcsum::core {

// What became of one file: the one outcome enum of every image-writing command
// (write/guard.hpp), whose name table gives the JSON "action" (repaired, clean, left, refused,
// failed, would-repair; restored, would-restore for --undo).
using RepairAction = Outcome;
inline std::string repair_action_name(RepairAction a)
{
  return std::string(outcome_name(a));
}

// The code of a failed verification: the data may be at risk (a critical finding, not merely an
// incomplete run).
constexpr const char* k_code_verify_failed = "verify-failed";

// What repair does with one bad sector (decide_sector(); pure, unit-tested).
enum class SectorAction {
  rewrite, // rewrite its extent's file range; the bytes come from `mirror` on the device
  read,    // some copy matches: a read through the filesystem lets btrfs repair it
  skip,    // left alone: see code and reason
};

struct SectorDecision
{
  SectorAction action = SectorAction::skip;
  std::optional<unsigned> mirror; // rewrite: the copy whose bytes are written back
  std::string code;               // skip: media, undetermined, compressed, unreadable
  std::string reason;
};

struct RepairChoice
{
  std::optional<unsigned> prefer_mirror;
  bool include_undetermined = false;
  bool after_read = false; // the sector was read once already and is still bad
  std::string mount_point; // for the advice in reasons
};

// The rule (man page "REPAIR"): no copy matches -> rewrite false mismatches (undetermined ones
// only when asked) from --prefer-mirror N if that copy was readable, else the lowest-numbered
// readable copy: mirror 1, the copy btrfs reads first, which is also what a read without
// checksums returns on dup. Some copy matches: a false mismatch is read first, and rewritten
// from what the filesystem reads (a good copy) if still bad after the read; media and
// undetermined ones are left to btrfs (scrub, or a read that hits the bad copy). Compressed extents
// are never rewritten: O_DIRECT writes are never compressed, so the race cannot have produced them.
SectorDecision decide_sector(const BadSector& bad, const RepairChoice& choice);

// The lowest-numbered readable copy that is not one byte repeated (SectorCopy::fill; the
// lowest of those when every copy is), or `prefer` when that copy exists and was readable.
std::optional<unsigned> choose_mirror(const BadSector& bad, std::optional<unsigned> prefer);

// --then-nocow's rule: NOCOW is worth it only where the data has one copy (single, raid0):
// there checksums detect but cannot heal, and NODATASUM files keep zero-copy O_DIRECT. With
// copies (dup, raid1*, raid10, raid5/6) it would give up self-healing for nothing on 7.0+.
bool nocow_worthwhile(const std::vector<std::string>& data_profiles, std::string& why_not);

struct RepairedSector
{
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t logical = 0;
  BadClass cls = BadClass::undetermined;
  std::string how;                // "rewritten" or "read-repair"
  std::optional<unsigned> mirror; // rewritten from this device copy; nullopt: as the fs read it
  bool copies_identical = false;
  std::vector<Evidence> evidence; // why it was classified so (scrub's evidence)
};

struct SkippedSector
{
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t logical = 0;
  BadClass cls = BadClass::undetermined;
  std::string code;
  std::string reason;
  std::vector<Evidence> evidence;
};

struct SharedRef
{
  uint64_t root = 0;
  uint64_t inode = 0;
  uint64_t offset = 0;
  std::optional<std::string> path; // where a mount shows it (own mount or below an ancestor)
};

// One file range rewritten because it references a damaged extent.
struct RewriteRange
{
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t old_logical = 0;   // btrfs logical address of the range's first byte before
  uint64_t extent_bytenr = 0; // the damaged extent
  uint64_t extent_bytes = 0;
  std::optional<bool> freed;          // the old extent is gone after the commit
  std::vector<SharedRef> shared_with; // other references that keep the old extent alive
  bool resumed = false;               // planned by an interrupted run (pending backup)
};

struct RepairVerify
{
  std::string method; // "o_direct": read back through btrfs, which verifies every checksum
  bool readable = false;
  bool matches = false;              // the bytes read back are the bytes written
  std::optional<uint64_t> bad_after; // bad sectors a per-copy scrub of the ranges still finds
};

struct NocowOutcome
{
  std::string action; // the `set` action (rewritten, refused, failed...) or "skipped"
  std::string code;
  std::string reason;
  bool converted = false; // the image is NOCOW now (or already was)
};

struct RepairEntry
{
  std::string path;
  std::string acted_on;
  // The identity of the file examined (empty/0 until it was opened).
  std::string fsid;
  uint64_t subvolume_id = 0;
  uint64_t inode = 0;
  uint64_t dev = 0; // its st_dev, for --then-nocow's identity check (not in the document)
  RepairAction action = RepairAction::failed;
  std::string code;
  std::string reason;
  uint64_t size = 0;
  uint64_t checked_bytes = 0;
  uint64_t bad_sectors = 0; // found before the repair
  std::vector<RepairedSector> repaired;
  std::vector<SkippedSector> skipped;
  std::vector<RewriteRange> ranges;
  std::optional<std::string> backup;
  uint64_t backup_bytes = 0;
  uint64_t rewritten_bytes = 0;
  std::optional<RepairVerify> verify;
  std::optional<NocowOutcome> nocow;
  std::vector<ImageUser> users;
  std::vector<ImageLock> locks;
  std::vector<std::string> steps; // the plan, in order (what --dry-run shows)
  std::vector<std::string> notes;
};

// What a scrub document says a file was: repair --from refuses a file that is no longer it
// (code identity-changed), e.g. replaced by a copy since the scrub.
struct ReportIdentity
{
  std::string fsid;
  uint64_t subvolume_id = 0;
  uint64_t inode = 0;
};

struct RepairOptions
{
  std::vector<std::string> paths;
  // --from: the bad sectors of a saved scrub report, per path (file offset, length); only
  // these are re-verified and repaired.
  std::optional<std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>>> from_report;
  // --from: the identity each of those files had when scrubbed (same keys).
  std::map<std::string, ReportIdentity> from_identity;
  std::optional<unsigned> prefer_mirror;
  bool include_undetermined = false;
  bool then_nocow = false;
  std::string backup_dir = "/var/lib/vmcsum/backup";
  bool dry_run = false;
  uint64_t limit_rate = 0;
  std::string proc_dir = "/proc";
  std::string mountinfo = "/proc/self/mountinfo";
  // The kernel record scrub classifies with, and where the backups are recorded for --undo
  // (backup_binding.hpp). Required for a repair that writes.
  std::string state_dir;
  VmConfigDirs vm_configs; // the cache modes scrub takes as evidence, as scrub and audit read them
};

struct UndoOptions
{
  std::string backup;
  std::optional<unsigned> prefer_mirror; // bad sectors: this copy instead of the one chosen
  bool force = false;                    // restore even if the file changed since
  bool dry_run = false;
  uint64_t limit_rate = 0;
  std::string proc_dir = "/proc";
  std::string state_dir; // where repairs recorded their backups (backup_binding.hpp)
};

struct RepairProgress
{
  std::string path;
  std::string phase; // scrub, read, recheck, backup, write, verify, check; undo: compare, write
  uint64_t done = 0;
  uint64_t total = 0;
};

struct RepairResult
{
  std::vector<RepairEntry> files;
  std::vector<std::string> notes;
  bool interrupted = false;
};

using RepairProgressFn = std::function<void(const RepairProgress&)>;

// How one entry weighs in the exit status (the CLI maps it to exit codes): a failed
// verification and a dry run that would repair are critical findings, any other refusal or
// failure leaves the run incomplete, skipped sectors, shared extents and a --then-nocow that did
// not convert are warnings.
enum class RepairSeverity { clean, warnings, critical, incomplete };
RepairSeverity repair_severity(const RepairEntry& e);

// Runs `vmcsum repair`. Problems with one file are that entry's refusal or failure. `cancel`
// is polled between chunks: what was written stays (each sector old or new, the backup on disk
// and pending), and a rerun finishes the job.
RepairResult repair(const RepairOptions& opts, const RepairProgressFn& progress,
                    const std::atomic<bool>& cancel);

// `vmcsum repair --undo BACKUP`: writes the saved bytes back.
RepairResult undo_repair(const UndoOptions& opts, const RepairProgressFn& progress,
                         const std::atomic<bool>& cancel);

// --from: the files and bad sectors (and divergent NODATASUM ranges) of a `vmcsum scrub --json`
// document (schema vmcsum.scrub/1 or /2), keyed by each file's canonical path when the document has
// it (so the document works from any directory), else by its path as given; `identities` (optional)
// gets what each file was. Throws Error{usage} for anything else.
std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>>
parse_scrub_report(const std::string& json_text,
                   std::map<std::string, ReportIdentity>* identities = nullptr);

} // namespace vmcsum::core
