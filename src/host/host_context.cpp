// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/host/host_context.hpp>
#include <vmcsum/sys/io.hpp>

#include <sys/stat.h>

namespace vmcsum::core {

const std::vector<ConfiguredDisk>& HostContext::configured(uint64_t dev, uint64_t ino) const
{
  static const std::vector<ConfiguredDisk> none;
  auto it = configured_by_inode.find({dev, ino});
  return it == configured_by_inode.end() ? none : it->second;
}

HostContext gather_host_context(const HostContextOptions& opts)
{
  HostContext h;
  h.kernel_release = opts.kernel_release.value_or(sys::kernel_release());
  h.kernel_version = parse_kernel_release(h.kernel_release);
  if (h.kernel_version) {
    h.policy = dio_policy_for(*h.kernel_version);
  } else {
    h.policy.reason = "kernel release not understood";
  }
  h.procs = scan_proc(opts.proc_root);
  if (opts.scan_vm_configs) {
    h.configs = scan_vm_configs(opts.vm_configs);
  }
  for (auto& c : qemu_configured_disks(h.procs)) {
    h.configs.disks.push_back(std::move(c));
  }
  for (const auto& c : h.configs.disks) {
    struct stat st = {};
    if (!c.path.empty() && ::stat(c.path.c_str(), &st) == 0) {
      h.configured_by_inode[{st.st_dev, st.st_ino}].push_back(c);
    }
  }
  return h;
}

} // namespace vmcsum::core
