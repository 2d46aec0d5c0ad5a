// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum scrub: every copy of every checksummed sector of a file, read from the devices and
// verified in user space, then read through the filesystem so the kernel confirms it, and each
// bad sector classified as a false mismatch (the O_DIRECT race), media damage or undetermined.
#pragma once

#include <vmcsum/host/host_context.hpp>
#include <vmcsum/host/kernel_log.hpp>
#include <vmcsum/host/kernel_policy.hpp>
#include <vmcsum/host/rate_limiter.hpp>
#include <vmcsum/host/vm_config.hpp>
#include <vmcsum/scrub/scrub_state.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/io.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace vmcsum::core {

enum class BadClass { false_mismatch, media, undetermined };
std::string bad_class_name(BadClass c); // "false-mismatch", "media", "undetermined"

// One piece of evidence behind a verdict: a stable code (scripts and tests use it) and a
// sentence for people. The codes are listed in vmcsum(8), section CLASSIFICATION.
struct Evidence
{
  std::string code;
  std::string text;
  bool operator==(const Evidence&) const = default;
};

// When the extent holding a finding was written, and by which kernel (kernel_record.hpp).
struct WriteFacts
{
  std::optional<uint64_t> generation; // EXTENT_DATA item generation; nullopt: not found
  std::string window;                 // write window id; "" when the generation is unknown
  bool window_known = false;          // between two records of one boot
  std::optional<std::string> kernel;  // the release that wrote it (known windows)
  DioWrite dio_write =
    DioWrite::unknown; // what an O_DIRECT write did then, for this inode and profile
};

// One copy of a bad sector.
struct SectorCopy
{
  unsigned mirror = 0;
  uint64_t devid = 0;
  std::string device;
  uint64_t physical = 0;
  std::string csum; // hex of what we computed over the bytes on the device
  bool matches = false;
  bool read_error = false; // the device read failed (csum empty)
  // RAID5/6: "" for the data unit's own bytes on its device; "from-p", "from-q" or "from-p-q"
  // for the sector computed from the other members of its full stripe (the other data units
  // and P, Q, or P and Q with one other data unit also taken as lost), as the kernel rebuilds
  // it when the device copy fails its csum. devid, device and physical are then those of the
  // parity unit used (Q for from-p-q); the bytes are on no device.
  std::string rebuilt;
  // The byte every byte of a device copy that fails its csum holds, when they are all one
  // (zeros, 0xff, a fill pattern): what a lost or unwritten sector, a device's fill or
  // deliberate damage leaves, not a version of data a guest wrote (classify: "uniform-copy").
  std::optional<uint8_t> fill;
};

// RAID5/6: a parity unit (P or Q) of a full stripe the file touches that does not hold the
// parity of its full stripe's data units as they are on the devices.
struct ParityMismatch
{
  uint64_t logical = 0; // the full stripe's first data byte (logical address)
  std::string parity;   // "p" or "q"
  uint64_t devid = 0;
  std::string device;
  uint64_t physical = 0;     // the parity unit's first byte on the device
  uint64_t sectors = 0;      // sectors of the unit whose parity does not match the data
  uint64_t first_offset = 0; // byte offset in the unit of the first of them
  // Of those, the sectors whose row holds no data sector this scrub found bad: parity that is
  // stale (an interrupted write, the write hole, damage to the parity unit), not explained by
  // damaged data. btrfs scrub rewrites it; vmcsum never writes parity.
  uint64_t stale_sectors = 0;
};

struct BadSector
{
  // File offset and length of the sector. For a compressed extent (compressed = true), whose
  // on-disk sectors do not map 1:1 to file sectors: the file range the extent covers (FIEMAP).
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t logical = 0;
  bool compressed = false;
  std::string expected_csum;
  std::vector<SectorCopy> copies;
  bool copies_identical = false; // every copy holds the same bytes
  WriteFacts written;
  BadClass cls = BadClass::undetermined;
  bool repairable = false; // some copy matches: btrfs repairs it on read or scrub
  std::vector<Evidence> evidence;
  // The kernel-verified pass: whether a read through the filesystem gave EIO (nullopt: not
  // run, or not attributable for compressed extents), and whether the bad copies match after it
  // (the kernel's read repair rewrote them).
  std::optional<bool> kernel_eio;
  std::optional<bool> repaired_by_read;
  // Set when this run did not read the sector through btrfs because an earlier kernel pass
  // confirmed it (same per-copy facts, no good copy; scrub_state.hpp): kernel_eio is then that
  // pass's answer, given at this time (microseconds since the epoch).
  std::optional<uint64_t> kernel_confirmed_at_us;
};

// A range of a file without checksums (NODATASUM) whose copies differ: two reads of it can
// return different data, and no checksum can tell which copy is right.
struct DivergentRange
{
  uint64_t offset = 0; // file offset
  uint64_t length = 0;
  uint64_t logical = 0;
  // Mirror numbers grouped by identical content: {{1},{2}} on raid1, {{1,3},{2}} on raid1c3.
  std::vector<std::vector<unsigned>> groups;
  WriteFacts written;
  BadClass cls = BadClass::undetermined;
  std::vector<Evidence> evidence;
};

// What the decision table looks at, besides the finding itself. Pure data, so unit tests can
// fill it.
struct ClassifyContext
{
  // Image open for writing with O_DIRECT now (/proc; nullopt: unknown).
  std::optional<bool> o_direct;
  // What the VM configurations naming the image say (libvirt cache='none'/'directsync',
  // Proxmox, a running QEMU's -drive): true when one opens it with O_DIRECT, false when they
  // all open it without, nullopt when no configuration names it. `configured_by` says which
  // ("libvirt:vm1 cache=none").
  std::optional<bool> configured_o_direct;
  std::vector<std::string> configured_by;
  // devid -> the device had read/write/flush errors (GET_DEV_STATS).
  std::map<uint64_t, bool> device_io_errors;
  // Write windows of the file's findings that carry the race's signature.
  std::set<std::string> signature_windows;
  bool open_for_writing = false;
};

// The race's signature on one sector: two or more copies, none matching its checksum, and not
// all holding the same bytes (two independent wrong versions of one sector are not what media
// does; the race leaves a copy per moment the buffer was transferred), none of them one byte
// repeated (SectorCopy::fill: zeros on one copy and a bit flip on the other is two kinds of
// damage, not two versions of a guest's data).
bool race_signature(const BadSector& bad);
// The same for a divergent range: three or more copies, all different.
bool race_signature(const DivergentRange& d);

// The decision table (issue 19; vmcsum(8) "CLASSIFICATION"; docs/kernel-facts.md "Evidence for and
// against the race"):
//  1. evidence that excludes the race (a compressed extent; an extent written while the kernel
//     fell back or bounced for this inode and profile) -> media;
//  2. a copy unreadable, or device errors on a failing copy's device -> media;
//  3. a kernel that may have written it zero-copy (known, or a gap of the record) together with
//     race evidence (the signature, another signature sector written in the same window, an
//     O_DIRECT writer open now or configured), and no failing copy one byte repeated (a lost
//     sector or a fill is no version of written data) -> false-mismatch;
//  4. otherwise media where a copy matches, else undetermined.
// Sets cls, repairable and evidence. Pure: no I/O.
void classify(BadSector& bad, const ClassifyContext& ctx);
void classify(DivergentRange& d, const ClassifyContext& ctx);

// Collects into ctx.signature_windows the windows of the findings that carry the signature.
void collect_signature_windows(const std::vector<BadSector>& bad,
                               const std::vector<DivergentRange>& divergent, ClassifyContext& ctx);

// Fills configured_o_direct and configured_by of ctx from the configurations naming an image.
void apply_configured(const std::vector<ConfiguredDisk>& configured, ClassifyContext& ctx);

// What the kernel-verified pass reads through btrfs after the per-copy pass:
//  findings: only the sectors the per-copy pass found bad (a compressed extent: its whole file
//            range), so the kernel's own EIO confirms each finding without a second read of
//            every good sector (already verified against the same csum tree);
//  full:     every data range of the file, which also catches a sector all of whose copies
//            verify but which the kernel fails (FileScrub::kernel_only_eio; none seen so far);
//  none:     no read through btrfs.
enum class KernelPassMode { findings, full, none };
std::string kernel_pass_mode_name(KernelPassMode m); // "findings", "full", "none"
// nullopt for any other name.
std::optional<KernelPassMode> parse_kernel_pass_mode(const std::string& name);

struct ScrubOptions
{
  std::vector<std::string> paths; // files or directories (walked one level deep and below)
  // false: no kernel pass whatever kernel_pass_mode says (what repair sets).
  bool kernel_pass = true;
  KernelPassMode kernel_pass_mode = KernelPassMode::findings;
  uint64_t limit_rate = 0;  // bytes per second read from devices (0: no limit)
  uint64_t chunk = 4 << 20; // bytes read per request
  std::string proc_root = "/proc";
  // The release this run records in the kernel record (default: uname -r; tests).
  std::optional<std::string> kernel_release;
  // The kernel log events of the scrubbed files (scrub_history); "" = not read.
  std::string kernel_log = "/dev/kmsg";
  bool journal = true;
  std::string journal_dir; // "" = the system journal
  // VM configurations: the cache mode each image is configured with is classification evidence.
  VmConfigDirs vm_configs;
  // Only these file ranges (offset, length) of every file; empty: whole files. Lets repair
  // re-verify what a saved report listed and check what it rewrote without reading whole images.
  // A compressed extent is verified whole when any of its file range is asked for.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  // When set, every read is counted there instead of against limit_rate: repair keeps one
  // budget over all its phases.
  RateLimiter* shared_limiter = nullptr;
  // vmcsum's state directory: the kernel record of each filesystem is read from it (and an
  // entry added for this run). "" = none: every extent's kernel is unknown.
  std::string state_dir;
  // Read every bad sector through btrfs again, even those an earlier kernel pass confirmed
  // (each such read adds corruption errors to the device stats and lines to the kernel log).
  bool reconfirm = false;
};

struct FileScrub
{
  std::string path;
  bool examined = false;
  std::optional<std::string> error;
  // The error was the kernel's EIO on reading the filesystem's own trees for this file (its
  // checksum or extent items): metadata damaged on every copy, a disk problem in itself.
  bool metadata_unreadable = false;
  uint64_t size = 0;
  uint64_t checked_bytes = 0;    // bytes of sectors with a csum, every copy read
  uint64_t checked_sectors = 0;  // sectors with a csum
  uint64_t no_csum_bytes = 0;    // written extents without csums (NODATASUM, no csum item)
  uint64_t skipped_bytes = 0;    // preallocated, inline or otherwise not verifiable extents
  uint64_t compressed_bytes = 0; // on-disk bytes of compressed extents verified
  unsigned copies = 0;           // copies per sector (profile)
  std::vector<BadSector> bad;
  std::vector<DivergentRange> divergent; // NODATASUM data whose copies differ
  // RAID5/6: the full stripes the file's verified data lies in, and their parity units that do
  // not match their data (empty on the other profiles).
  uint64_t parity_checked_stripes = 0;
  std::vector<ParityMismatch> parity;
  uint64_t compared_bytes = 0; // NODATASUM bytes whose copies were compared
  std::optional<bool> open_for_writing;
  std::optional<bool> open_o_direct;
  std::vector<std::string> writers; // "comm[pid]"
  // The VM configurations that name this image (same inode), with their cache modes.
  std::vector<ConfiguredDisk> configured;
  bool kernel_pass = false;
  KernelPassMode kernel_pass_mode = KernelPassMode::none; // what it read (none: not run)
  uint64_t kernel_eio_sectors = 0;
  uint64_t kernel_read_repairs = 0;
  // Bad sectors not read through btrfs this time: an earlier kernel pass confirmed them.
  uint64_t kernel_confirmed_before = 0;
  // File offsets where the kernel returned EIO but the per-copy pass found every copy good
  // (only a full kernel pass reads such sectors).
  std::vector<uint64_t> kernel_only_eio;
  std::vector<std::string> notes;
  uint64_t subvolume_id = 0;
  uint64_t inode = 0;
  // Identity, so that a later command finds the same file from anywhere (repair --from):
  // the kernel's absolute path of the descriptor scrubbed, and the filesystem's UUID.
  std::string canonical_path;
  std::string fsid;
};

struct HistoryEvent
{
  CsumLogEvent event;
  std::string source;                    // "kmsg", "journal"
  std::optional<std::string> path;       // resolved file path
  std::optional<std::string> boot;       // boot id (32 hex digits)
  std::optional<uint64_t> timestamp;     // microseconds since the epoch (the first occurrence)
  std::optional<uint64_t> since_boot_us; // kmsg: printk time of the first occurrence
  // A read of vmcsum's own kernel pass caused it (a recorded read window matches).
  bool caused_by_vmcsum = false;
  // Repeats of the same event merged into this one (scrub_history).
  uint64_t count = 1;
  std::optional<uint64_t> last_timestamp;
  // The file it names, where the filesystem it was logged for is mounted (resolve()).
  std::string fsid;
  uint64_t subvolume = 0;
  uint64_t inode = 0;
  // Its last occurrence is older than the file's last verified repair or clean whole-file
  // scrub (healed_of(), the state directory's): damage since mended, no alarm.
  std::optional<Healed> healed;
};

// Merges events that say the same thing (kind, device, root, inode, offset, logical, mirror,
// csum, expected csum, and whether vmcsum caused them) into one with a count and the first and
// last time; order of first occurrence is kept.
std::vector<HistoryEvent> merge_history(std::vector<HistoryEvent> events);
// Marks the events a read window explains (caused_by_vmcsum).
void mark_own_reads(std::vector<HistoryEvent>& events, const std::vector<ReadWindow>& windows);

struct ScrubResult
{
  std::vector<FileScrub> files;
  // Read windows of this run's kernel passes (also saved in the state directory).
  std::vector<ReadWindow> windows;
  std::vector<HistoryEvent> history;
  std::vector<std::string> notes;
  // Stopped by the Cancel token (SIGINT/SIGTERM in the CLI): the file being scrubbed then is
  // reported unexamined, later files are not listed, and nothing of it is saved.
  bool interrupted = false;
};

// Progress: the file being scrubbed and the pass (phase) reading it. In k_phase_per_copy, bytes
// done and total over every file; in k_phase_kernel (the read through the filesystem after the
// per-copy pass), bytes done and total of that file's kernel pass.
inline constexpr const char* k_phase_per_copy = "per-copy";
inline constexpr const char* k_phase_kernel = "kernel pass";
using ScrubProgress =
  std::function<void(uint64_t done, uint64_t total, const std::string& path, const char* phase)>;

// Scrubs every file. Per-file problems are data (FileScrub::error); throws only when nothing can
// run at all. Needs root (TREE_SEARCH, raw device reads). Files are listed by sys::walk_tree and
// opened through sys::FileRef: nothing outside the given trees is read, and an entry swapped
// for a FIFO, symlink or other file since the listing is refused with a reason. `cancel` is
// polled between pieces (at most opts.chunk bytes): a requested stop ends the run early with
// ScrubResult::interrupted.
ScrubResult scrub(const ScrubOptions& opts, const ScrubProgress& progress = {},
                  const sys::Cancel& cancel = {});

// Scrubs files one at a time, for callers that already hold them open (repair re-verifies what
// it rewrote without rerunning whole scrubs). The filesystem contexts (chunk map, devices,
// kernel record, scrub state) are read once per filesystem and kept for later files. The kernel
// log history is not read (scrub() does that over all the files).
class ScrubSession
{
public:
  ScrubSession(const ScrubOptions& opts, const HostContext& host, ScrubProgress progress = {},
               sys::Cancel cancel = {});
  ~ScrubSession();
  ScrubSession(const ScrubSession&) = delete;
  ScrubSession& operator=(const ScrubSession&) = delete;

  // `fd`: a regular file on btrfs, open for reading (it is switched to O_DIRECT for the kernel
  // pass and back). `display` names it in the result. `ranges`: (offset, length) of the file
  // to verify; empty: opts.ranges (empty there too: the whole file).
  FileScrub scrub_file(const sys::Fd& fd, const std::string& display,
                       const std::vector<std::pair<uint64_t, uint64_t>>& ranges = {});
  // Counted against the progress total (bytes).
  void set_total(uint64_t total);
  bool interrupted() const;
  // Run notes (kernel record, scrub state) and the read windows of the kernel passes so far.
  const std::vector<std::string>& notes() const;
  const std::vector<ReadWindow>& windows() const;

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// Where the kernel log comes from: /dev/kmsg (or a text file) for this boot, and the systemd
// journal for earlier boots.
struct HistoryOptions
{
  std::string kernel_log = "/dev/kmsg";
  bool journal = true;
  std::string journal_dir; // journal directory or file; "" = the system journal
  std::string mountinfo = "/proc/self/mountinfo";
  // Where vmcsum's read windows are kept ("" = none) and windows of this run not saved there.
  std::string state_dir;
  const std::vector<ReadWindow>* extra_windows = nullptr;
};

// Only the kernel log: every btrfs checksum event (dev-stats lines left out), root+inode (or
// logical) resolved to a path where a mounted subvolume has it (BTRFS_IOC_INO_PATHS,
// BTRFS_IOC_LOGICAL_INO; root only). With paths, only the events of those files or of files
// below those directories.
ScrubResult scrub_history(const std::vector<std::string>& paths, const HistoryOptions& opts = {});

} // namespace vmcsum::core
