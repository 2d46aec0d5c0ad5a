// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum audit: find VM images, learn how they are stored, configured and used, and say what is
// at risk of false checksum mismatches (or pays for avoiding them), and why.
#pragma once

#include <vmcsum/host/kernel_policy.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/host/vm_config.hpp>
#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/report/finding.hpp>
#include <vmcsum/scrub/scrub_state.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace vmcsum::core {

struct AuditOptions
{
  std::vector<std::string> paths; // files or directories; empty = the usual places
  VmConfigDirs vm_configs;
  std::string proc_dir = "/proc";
  std::string kernel_log = "/dev/kmsg";      // or a text file of kernel log lines; "" = skip
  std::optional<std::string> kernel_release; // default: uname -r
  std::string mountinfo = "/proc/self/mountinfo";
  // Measure O_DIRECT on each btrfs holding images (core::probe_filesystem) and prefer that
  // over the version table; kernel.source then says "probe".
  bool probe = false;
  // vmcsum's state directory: scrub outcomes, verified repairs and the read windows of its own
  // kernel passes (scrub_state.hpp). "" = none.
  std::string state_dir;
  // Polled between the files walked and the images examined: once true, audit stops there and
  // reports what it examined so far (AuditResult::interrupted). Usually sys::stop_flag().
  const std::atomic<bool>* cancel = nullptr;
};

struct KernelReport
{
  std::string release;
  DioPolicy policy;
  std::string source = "version-table"; // "probe" once a measured answer is used
};

struct ImageReport
{
  FileFacts facts;
  std::string format;
  std::vector<std::string> found_via; // "walk:/var/lib/libvirt/images", "libvirt:win10", ...
  std::vector<ImageUser> open_by;     // audit does not probe F_OFD_GETLK: only what /proc shows
  std::vector<ImageLock> locks;
  std::vector<ConfiguredDisk> configured;
  std::optional<bool> dir_nocow;        // the NOCOW attribute of the directory holding it
  uint64_t logged_csum_errors = 0;      // kernel log lines naming this image's inode
  std::vector<uint64_t> logged_offsets; // distinct file offsets from those lines (first 64)
  uint64_t logged_own_reads = 0;        // further lines caused by vmcsum's own reads
  // The last verified repair, and the last whole-file scrub if it was clean (epoch µs).
  std::optional<uint64_t> repaired_at_us;
  std::optional<uint64_t> scrubbed_clean_at_us;
  std::optional<Healed> healed; // the later of the two that still counts (healed_of())
  std::vector<Finding> findings;
  // Audit's own read of its head or tail failed: why (the read-error finding says it).
  std::optional<std::string> read_error;
  bool read_error_eio = false;
};

struct AuditProblem
{
  std::string path;
  std::string reason;
};

struct AuditResult
{
  KernelReport kernel;
  // A deque: each report lands in memory its candidate just freed, where one vector of them
  // all was fresh pages (a page fault per 4 KiB).
  std::deque<ImageReport> images;
  std::vector<AuditProblem> problems; // paths that could not be examined
  std::vector<std::string> searched;  // roots walked
  std::vector<std::string> notes;     // e.g. "kernel log not readable: ..."
  bool interrupted = false;           // stopped by `cancel`: images and problems are partial
  // Not run as root: NODATASUM (an ioctl that needs CAP_SYS_ADMIN), other users' processes and
  // the kernel log may be unreadable, so an image can look safer than it is (a note says so).
  bool unprivileged = false;
};

AuditResult audit(const AuditOptions& opts);

// Everything the decision table looks at, so that it can be tested without a filesystem.
struct RiskInputs
{
  bool nocow = false;
  std::optional<bool> nodatasum; // nullopt: unknown (not root)
  std::vector<std::string> data_profiles;
  uint64_t shared_bytes = 0;
  bool o_direct_configured = false; // a config opens it with O_DIRECT
  bool o_direct_open = false;       // a process has it open with O_DIRECT now
  bool writer_open = false;         // some process has it open for writing
  std::optional<bool> dir_nocow;
  uint64_t logged_csum_errors = 0;
  // When the last of those events happened (epoch µs; nullopt when some line has no time).
  std::optional<uint64_t> last_logged_us;
  // The image was repaired (verified) or scrubbed clean at this time (epoch µs), and how.
  std::optional<uint64_t> healed_at_us;
  std::string healed_by; // "repair", "scrub"
  DioPolicy policy;
  std::string kernel_release;
  std::string policy_source = "version-table";
};

// The findings for one image (codes are documented in vmcsum(8)).
std::vector<Finding> assess(const RiskInputs& in);

} // namespace vmcsum::core
