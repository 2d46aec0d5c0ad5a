// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Where VM configurations say images live and how they are opened: libvirt domain and pool
// XML (pugixml), Proxmox qemu-server configs and storage.cfg. Parsers take text and are fuzzed.
#pragma once

#include <vmcsum/host/proc_scan.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmcsum::core {

struct ConfiguredDisk
{
  std::string source;    // "libvirt:<domain>", "proxmox:<vmid>", "qemu:<pid>"
  std::string path;      // image file (absolute) when it is a file
  std::string cache;     // as configured ("none", "writeback", ... or "" = hypervisor default)
  std::string io;        // libvirt io= / Proxmox aio= / QEMU aio= ("native", "threads", "io_uring")
  bool o_direct = false; // the cache mode opens the image with O_DIRECT
  std::string target;    // guest device name (vda, scsi0, ...)
  // libvirt <disk type='volume'>: path is empty and the caller resolves the volume with the
  // pool's target path (parse_libvirt_pool_target()).
  std::string pool, volume;
  // A running QEMU's drive: (st_dev, st_ino) of the file it named when it was trusted
  // (qemu_configured_disks()). Matched by this, never by its path again: a symlink swapped
  // meanwhile would lend the drive's cache mode to another file.
  std::optional<std::pair<uint64_t, uint64_t>> inode;

  bool operator==(const ConfiguredDisk&) const = default;
};

// A libvirt domain XML (<domain><devices><disk type='file' device='disk'><driver
// cache='none' io='native'/><source file='...'/><target dev='vda'/>). Only disks backed by
// files (type file with an absolute path, or volume resolved later) are returned;
// device='cdrom', block and network disks are skipped. ConfiguredDisk::source is
// "libvirt:<name>". Returns nullopt when the text is not well-formed XML or not a domain.
std::optional<std::vector<ConfiguredDisk>> parse_libvirt_domain(std::string_view xml);

// The domain name (<name>) of a libvirt domain XML, "" if absent.
std::string libvirt_domain_name(std::string_view xml);

// A libvirt storage pool XML: the <target><path> of dir/fs/netfs pools, nullopt otherwise.
std::optional<std::string> parse_libvirt_pool_target(std::string_view xml);

// A Proxmox storage.cfg: storage id -> path for dir and btrfs storages ("dir: local\n\tpath
// /var/lib/vz\n", "btrfs: local-btrfs\n\tpath /mnt/btrfs\n").
struct ProxmoxStorage
{
  std::string id, type, path;
  // btrfs storages: "nocow 1". qemu-server then opens disks without an explicit cache mode
  // with cache=none, as on any other storage (drive_uses_cache_direct()).
  bool nocow = false;
};
std::vector<ProxmoxStorage> parse_proxmox_storage_cfg(std::string_view text);

// A Proxmox /etc/pve/qemu-server/VMID.conf: the disks of the current config (not of
// [snapshot] sections): scsiN/virtioN/sataN/ideN/efidisk0/tpmstate0 = "STORAGE:VOLUME,opt=..".
// Volumes are resolved to paths with the storages: dir storages keep images in
// PATH/images/VMID/NAME, btrfs storages in PATH/images/VMID/NAME-without-.raw/disk.raw (raw)
// ("vm-100-disk-0.raw" -> PATH/images/100/vm-100-disk-0/disk.raw). A plain absolute path as
// volume is taken as is; cdrom/none/unresolvable volumes are skipped. o_direct follows
// qemu-server: an explicit cache mode decides; without one, disks get cache=none except on
// btrfs storages without nocow (efidisk0 and tpmstate0 are never opened with O_DIRECT).
std::vector<ConfiguredDisk> parse_proxmox_vm(std::string_view text, const std::string& vmid,
                                             const std::vector<ProxmoxStorage>& storages);

// Where audit and scrub look for VM configurations.
struct VmConfigDirs
{
  std::string libvirt_dir = "/etc/libvirt";     // qemu/*.xml (domains), storage/*.xml (pools)
  std::string libvirt_run_dir = "/run/libvirt"; // qemu/*.xml of running domains
  std::string pve_dir = "/etc/pve";             // qemu-server/*.conf, storage.cfg
};

struct VmConfigScan
{
  std::vector<ConfiguredDisk> disks;
  std::vector<std::string> pool_targets; // <target><path> of libvirt dir/fs/netfs pools
  std::vector<ProxmoxStorage> storages;  // of the Proxmox storage.cfg
  std::vector<std::string> unreadable;   // config files that could not be read
  std::vector<std::string> notes;        // e.g. "FILE: not a libvirt domain"
};

// Every disk named by the libvirt domains (defined and running) and Proxmox VM configs under
// `dirs`, libvirt volumes resolved through their pools. Missing directories are not an error.
// Never throws.
VmConfigScan scan_vm_configs(const VmConfigDirs& dirs);

// The file-backed drives of the running QEMUs of a /proc scan, as configured disks
// ("qemu:<pid>", cache, aio, O_DIRECT as QEMU opens them).
std::vector<ConfiguredDisk> qemu_configured_disks(const ProcScan& procs);

} // namespace vmcsum::core
