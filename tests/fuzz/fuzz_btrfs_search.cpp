// SPDX-License-Identifier: GPL-2.0-or-later
// libFuzzer target: the result buffers the kernel fills for BTRFS_IOC_TREE_SEARCH_V2 (search
// headers and items) and for LOGICAL_INO_V2 / INO_PATHS (struct btrfs_data_container). The first
// byte picks the decoder; for the search buffer the next 4 bytes are nr_items.
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace {

using namespace vmcsum::btrfs;

void search(std::span<const uint8_t> buf, uint32_t nr_items)
{
  const uint8_t* begin = buf.data();
  const uint8_t* end = buf.data() + buf.size();
  uint32_t seen = 0;
  Key last;
  try {
    (void)decode_search_buffer(
      buf, nr_items,
      [&](const Key&, std::span<const uint8_t> item) {
        if (item.data() < begin || item.data() + item.size() > end) {
          __builtin_trap();
        }
        ++seen;
        return true;
      },
      last);
  } catch (const vmcsum::Error&) {
    return;
  }
  if (seen != nr_items) {
    __builtin_trap();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  if (size < 5) {
    return 0;
  }
  std::span<const uint8_t> rest(data + 5, size - 5);
  switch (data[0] % 3) {
  case 0:
    // nr_items bounded so a claim of 4 billion empty items cannot make one input slow.
    search(rest, le32(data + 1) % 4096);
    break;
  case 1:
    if (decode_logical_ino(rest).size() * 24 > rest.size()) {
      __builtin_trap();
    }
    break;
  default:
    for (const auto& p : decode_ino_paths(rest, 16)) {
      if (p.size() > rest.size()) {
        __builtin_trap();
      }
    }
    break;
  }
  return 0;
}
