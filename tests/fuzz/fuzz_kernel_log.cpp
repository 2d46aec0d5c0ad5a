// SPDX-License-Identifier: GPL-2.0-or-later
// libFuzzer target: kernel log lines (every line of the input, and the input as one line) and
// kernel release strings.
#include <vmcsum/host/kernel_log.hpp>
#include <vmcsum/host/kernel_policy.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace {
void check(std::string_view line)
{
  auto e = vmcsum::core::parse_kernel_log_line(line);
  // Touch every field so the sanitizers see any dangling or uninitialised one.
  if (e && (e->device.empty() || e->level.empty())) {
    __builtin_trap();
  }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check(text);
  while (!text.empty()) {
    size_t nl = text.find('\n');
    check(text.substr(0, nl));
    if (nl == std::string_view::npos) {
      break;
    }
    text.remove_prefix(nl + 1);
  }
  if (auto v = vmcsum::core::parse_kernel_release(
        std::string_view(reinterpret_cast<const char*>(data), size))) {
    auto p = vmcsum::core::dio_policy_for(*v);
    if (p.reason.empty()) {
      __builtin_trap();
    }
  }
  return 0;
}
