// SPDX-License-Identifier: GPL-2.0-or-later
// libFuzzer target: libvirt domain and pool XML, Proxmox storage.cfg and VM configs.
#include <vmcsum/host/vm_config.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  using namespace vmcsum::core;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto disks = parse_libvirt_domain(text)) {
    for (const auto& d : *disks) {
      // The parser promises absolute paths or a pool/volume pair.
      if (d.path.empty() ? (d.pool.empty() || d.volume.empty()) : d.path[0] != '/') {
        __builtin_trap();
      }
    }
  }
  (void)libvirt_domain_name(text);
  if (auto target = parse_libvirt_pool_target(text); target && target->empty()) {
    __builtin_trap();
  }

  // Storages from the input itself plus a fixed set, so that volume names in the input
  // reach the path resolution of every storage type.
  auto storages = parse_proxmox_storage_cfg(text);
  storages.push_back({"local", "dir", "/var/lib/vz", false});
  storages.push_back({"local-btrfs", "btrfs", "/mnt/btrfs/", false});
  storages.push_back({"nocow", "btrfs", "/mnt/nocow", true});
  for (const auto& d : parse_proxmox_vm(text, "100", storages)) {
    if (d.path.empty() || d.target.empty()) {
      __builtin_trap();
    }
  }
  return 0;
}
