// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/host/host_context.hpp>
#include <vmcsum/sys/io.hpp>

#include <utility>

#include <sys/stat.h>

namespace vmcsum::core {

const std::vector<ConfiguredDisk>& HostContext::configured(uint64_t dev, uint64_t ino) const
{
  static const std::vector<ConfiguredDisk> none;
  auto it = configured_by_inode.find({dev, ino});
  return it == configured_by_inode.end() ? none : it->second;
}

KernelContext kernel_context(const std::optional<std::string>& release)
{
  KernelContext k;
  k.release = release.value_or(sys::kernel_release());
  k.version = parse_kernel_release(k.release);
  if (k.version) {
    k.policy = dio_policy_for(*k.version);
  } else {
    k.policy.reason = "kernel release not understood";
  }
  return k;
}

namespace {

void index_configured(HostContext& h, const ConfiguredDisk& c)
{
  struct stat st = {};
  if (c.inode) { // a QEMU's drive: the file it named when trusted, not its path now
    h.configured_by_inode[{static_cast<dev_t>(c.inode->first), static_cast<ino_t>(c.inode->second)}]
      .push_back(c);
  } else if (!c.path.empty() && ::stat(c.path.c_str(), &st) == 0) {
    h.configured_by_inode[{st.st_dev, st.st_ino}].push_back(c);
  }
}

} // namespace

HostContext gather_host_context(const HostContextOptions& opts)
{
  HostContext h;
  h.kernel = kernel_context(opts.kernel_release);
  if (opts.scan_vm_configs) {
    h.configs = scan_vm_configs(opts.vm_configs);
  }
  for (const auto& c : h.configs.disks) {
    index_configured(h, c);
  }
  if (opts.scan_procs) {
    add_process_scan(h, scan_proc(opts.proc_root));
  }
  return h;
}

void add_process_scan(HostContext& h, ProcScan procs)
{
  h.procs = std::move(procs);
  for (auto& c : qemu_configured_disks(h.procs)) {
    index_configured(h, c);
    h.configs.disks.push_back(std::move(c));
  }
}

} // namespace vmcsum::core
