// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What vmcsum learns about the host once per run and hands to audit, scrub, probe and bench:
// the running kernel and what its O_DIRECT writes do, the processes and their open files (the
// /proc scan), and the VM configurations naming images. Gathered once, so that a scrub of many
// files, or a repair that scrubs per file, does not rescan /proc for each.
#pragma once

#include <vmcsum/host/kernel_policy.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/host/vm_config.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vmcsum::core {

// Where to look; every directory can be pointed elsewhere (tests use fixture trees).
struct HostContextOptions
{
  std::string proc_root = "/proc";
  VmConfigDirs vm_configs;
  bool scan_vm_configs = true;
  // false: procs stays empty; the caller scans /proc itself (audit does, beside its walk) and
  // hands the scan to add_process_scan.
  bool scan_procs = true;
  // The release to judge by (default: the running kernel's, uname -r).
  std::optional<std::string> kernel_release;
};

// The kernel part of the host context: the release judged by and what the version table says
// its O_DIRECT writes do. Probe and bench need only this part.
struct KernelContext
{
  std::string release;
  std::optional<KernelVersion> version; // nullopt: the release is not understood
  DioPolicy policy;                     // reason says why when the release is unknown
};

// `release` when given (tests, --kernel-release), else the running kernel's (uname -r).
KernelContext kernel_context(const std::optional<std::string>& release = std::nullopt);

struct HostContext
{
  KernelContext kernel;
  ProcScan procs;
  // The VM configurations, and the drives of running QEMUs appended to configs.disks.
  VmConfigScan configs;
  // configs.disks by the (st_dev, st_ino) of the image each names (stat'ed when gathered;
  // disks whose image is missing are left out).
  std::map<std::pair<uint64_t, uint64_t>, std::vector<ConfiguredDisk>> configured_by_inode;

  // The configured disks naming this inode (empty if none).
  const std::vector<ConfiguredDisk>& configured(uint64_t dev, uint64_t ino) const;
};

// Never throws for an unreadable /proc entry or configuration: those are noted in procs and
// configs, as scan_proc and scan_vm_configs do.
HostContext gather_host_context(const HostContextOptions& opts = {});

// Completes a context gathered without its /proc scan: the scan, and the drives of its running
// QEMUs as configured disks (after those of the configurations, as gather_host_context adds
// them).
void add_process_scan(HostContext& h, ProcScan procs);

} // namespace vmcsum::core
