// SPDX-License-Identifier: GPL-2.0-or-later
// libFuzzer target: /proc/PID/fdinfo (its flags and lock: lines) and QEMU command lines.
#include <vmcsum/host/proc_scan.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  using namespace vmcsum::core;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto flags = parse_fdinfo_flags(text)) {
    (void)flags_have_o_direct(*flags);
    (void)flags_writable(*flags);
  }
  for (const auto& l : parse_fdinfo_locks(text)) {
    if (is_qemu_write_lock(l) && !is_qemu_lock(l)) {
      __builtin_trap();
    }
    if (l.end && *l.end < l.start) {
      __builtin_trap();
    }
  }
  auto argv = split_cmdline(text);
  for (const auto& d : parse_qemu_cmdline(argv)) {
    if (d.file.empty()) {
      __builtin_trap();
    }
    (void)d.o_direct();
  }
  return 0;
}
