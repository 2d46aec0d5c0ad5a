// SPDX-License-Identifier: GPL-2.0-or-later
// libFuzzer target: the files vmcsum keeps in its state directory and reads back on the next run
// (the scrub state, the kernel record). vmcsum wrote them, but a crash, a full disk, a restored
// backup or an admin's editor can leave anything there; a run must refuse them with an error,
// never crash, and what it accepts must mean the same written out again.
#include <vmcsum/error.hpp>
#include <vmcsum/host/kernel_record.hpp>
#include <vmcsum/scrub/scrub_state.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  using namespace vmcsum;
  using namespace vmcsum::core;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const std::string once = dump_scrub_state(parse_scrub_state(text));
    if (dump_scrub_state(parse_scrub_state(once)) != once) {
      __builtin_trap();
    }
  } catch (const Error&) {
  }
  try {
    const KernelRecord r = KernelRecord::parse(text, "f");
    const std::string once = r.format();
    if (KernelRecord::parse(once, "f").format() != once) {
      __builtin_trap();
    }
  } catch (const Error&) {
  }
  return 0;
}
