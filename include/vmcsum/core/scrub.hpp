// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum scrub: every copy of every checksummed sector of a file, read from the devices and
// verified in user space, then read through the filesystem so the kernel confirms it, and each
// bad sector classified as a false mismatch (the O_DIRECT race), media damage or undetermined.
#pragma once

#include <vmcsum/core/kernel_log.hpp>
#include <vmcsum/core/rate_limiter.hpp>
#include <vmcsum/core/vm_config.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace vmcsum::core {

enum class BadClass { false_mismatch, media, undetermined };
std::string bad_class_name(BadClass c); // "false-mismatch", "media", "undetermined"

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
  BadClass cls = BadClass::undetermined;
  bool repairable = false; // some copy matches: btrfs repairs it on read or scrub
  std::vector<std::string> evidence;
  // The kernel-verified pass: whether a read through the filesystem gave EIO (nullopt: not
  // run, or not attributable for compressed extents), and whether the bad copies match after it
  // (the kernel's read repair rewrote them).
  std::optional<bool> kernel_eio;
  std::optional<bool> repaired_by_read;
};

// What the decision table looks at, besides the sector itself. Pure data, so unit tests can
// fill it.
struct ClassifyContext
{
  // Image open with O_DIRECT now (/proc; nullopt: unknown).
  std::optional<bool> o_direct;
  // What the VM configurations naming the image say (libvirt cache='none'/'directsync',
  // Proxmox, a running QEMU's -drive): true when one opens it with O_DIRECT, false when they
  // all open it without, nullopt when no configuration names it. `configured_by` says which
  // ("libvirt:vm1 cache=none").
  std::optional<bool> configured_o_direct;
  std::vector<std::string> configured_by;
  // The running kernel writes O_DIRECT to checksummed files without the buffered fallback.
  std::optional<bool> kernel_direct;
  // devid -> the device had read/write/flush errors (GET_DEV_STATS).
  std::map<uint64_t, bool> device_io_errors;
  // Of the file's bad sectors: how many no copy matches, how many only later copies fail
  // (mirror 1 matches, a later one does not), how many fail on mirror 1 alone.
  size_t no_copy_matches = 0;
  size_t later_copy_only = 0;
  size_t first_copy_only = 0;
};

// The "many sectors" threshold for the later-copy pattern of the race (kernel submits mirror 1
// first, and the buffer kept changing before the next copies were submitted).
constexpr size_t k_later_copy_many = 16;

// The decision table (issue 5, from the real race on 6.1; see man page "CLASSIFICATION"). Sets
// cls, repairable and appends the evidence. Pure: no I/O.
void classify(BadSector& bad, const ClassifyContext& ctx);

// Fills configured_o_direct and configured_by of ctx from the configurations naming an image.
void apply_configured(const std::vector<ConfiguredDisk>& configured, ClassifyContext& ctx);

// Fills the per-file counters of ctx from its bad sectors.
void count_patterns(const std::vector<BadSector>& bad, ClassifyContext& ctx);

struct ScrubOptions
{
  std::vector<std::string> paths; // files or directories (walked one level deep and below)
  bool kernel_pass = true;        // read through the filesystem after the per-copy pass
  uint64_t limit_rate = 0;        // bytes per second read from devices (0: no limit)
  uint64_t chunk = 4 << 20;       // bytes read per request
  std::string proc_root = "/proc";
  std::optional<std::string> kernel_release; // default: uname
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
};

struct FileScrub
{
  std::string path;
  bool examined = false;
  std::optional<std::string> error;
  uint64_t size = 0;
  uint64_t checked_bytes = 0;    // bytes of sectors with a csum, every copy read
  uint64_t checked_sectors = 0;  // sectors with a csum
  uint64_t no_csum_bytes = 0;    // written extents without csums (NODATASUM, no csum item)
  uint64_t skipped_bytes = 0;    // preallocated, inline or otherwise not verifiable extents
  uint64_t compressed_bytes = 0; // on-disk bytes of compressed extents verified
  unsigned copies = 0;           // copies per sector (profile)
  std::vector<BadSector> bad;
  std::optional<bool> open_for_writing;
  std::optional<bool> open_o_direct;
  std::vector<std::string> writers; // "comm[pid]"
  // The VM configurations that name this image (same inode), with their cache modes.
  std::vector<ConfiguredDisk> configured;
  bool kernel_pass = false;
  uint64_t kernel_eio_sectors = 0;
  uint64_t kernel_read_repairs = 0;
  // File offsets where the kernel returned EIO but the per-copy pass found every copy good.
  std::vector<uint64_t> kernel_only_eio;
  std::vector<std::string> notes;
  uint64_t subvolume_id = 0;
  uint64_t inode = 0;
};

struct HistoryEvent
{
  CsumLogEvent event;
  std::string source;                // "kmsg", "journal"
  std::optional<std::string> path;   // resolved file path
  std::optional<std::string> boot;   // journal boot id
  std::optional<uint64_t> timestamp; // microseconds since the epoch (journal) or boot (kmsg)
};

struct ScrubResult
{
  std::vector<FileScrub> files;
  std::vector<HistoryEvent> history;
  std::vector<std::string> notes;
};

// Progress: bytes done and total over every file, and the file being scrubbed.
using ScrubProgress = std::function<void(uint64_t done, uint64_t total, const std::string& path)>;

// Scrubs every file. Per-file problems are data (FileScrub::error); throws only when nothing can
// run at all. Needs root (TREE_SEARCH, raw device reads).
ScrubResult scrub(const ScrubOptions& opts, const ScrubProgress& progress = {});

// Where the kernel log comes from: /dev/kmsg (or a text file) for this boot, and the systemd
// journal for earlier boots.
struct HistoryOptions
{
  std::string kernel_log = "/dev/kmsg";
  bool journal = true;
  std::string journal_dir; // journal directory or file; "" = the system journal
  std::string mountinfo = "/proc/self/mountinfo";
};

// Only the kernel log: every btrfs checksum event (dev-stats lines left out), root+inode (or
// logical) resolved to a path where a mounted subvolume has it (BTRFS_IOC_INO_PATHS,
// BTRFS_IOC_LOGICAL_INO; root only). With paths, only the events of those files or of files
// below those directories.
ScrubResult scrub_history(const std::vector<std::string>& paths, const HistoryOptions& opts = {});

} // namespace vmcsum::core
