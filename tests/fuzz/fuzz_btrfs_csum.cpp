// SPDX-License-Identifier: GPL-2.0-or-later
// libFuzzer target: CsumRangeWalker, which turns EXTENT_CSUM items from the csum tree into one
// visit per sector. Input: sectorsize and csum size selectors, the range (start, sectors), then
// items as (u64 key offset, u16 body size, body).
#include <vmcsum/btrfs/csum_tree.hpp>
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  using namespace vmcsum::btrfs;
  if (size < 12) {
    return 0;
  }
  static const uint32_t sectorsizes[] = {512, 4096, 16384, 65536};
  static const uint16_t csum_sizes[] = {4, 8, 32, 1};
  const uint32_t sectorsize = sectorsizes[data[0] & 3];
  const uint16_t csum_size = csum_sizes[(data[0] >> 2) & 3];
  const uint64_t logical = le64(data + 1);
  // At most 1024 sectors, so one input stays fast whatever the items claim.
  const uint64_t length = uint64_t{data[9]} * 4 * sectorsize + (data[10] & 0x0f);
  const bool stop_early = data[11] & 1;

  uint64_t visits = 0;
  uint64_t previous = 0;
  bool first = true;
  CsumRangeWalker walker(logical, length, sectorsize, csum_size,
                         [&](uint64_t l, std::span<const uint8_t> csum) {
                           // Ascending, sector by sector, each csum whole or absent.
                           if (l % sectorsize != 0 || (!first && l != previous + sectorsize) ||
                               (!csum.empty() && csum.size() != csum_size)) {
                             __builtin_trap();
                           }
                           first = false;
                           previous = l;
                           ++visits;
                           return !(stop_early && visits == 3);
                         });
  size_t pos = 12;
  try {
    while (size - pos >= 10) {
      const uint64_t start = le64(data + pos);
      const size_t len = std::min<size_t>(le16(data + pos + 8), size - pos - 10);
      pos += 10;
      if (!walker.feed(start, {data + pos, len})) {
        break;
      }
      pos += len;
    }
    walker.finish();
  } catch (const vmcsum::Error&) {
    return 0; // an item the tree-checker would reject
  }
  // Without an early stop and without wrap-around, every sector of the range was visited.
  const uint64_t first_sector = logical / sectorsize;
  const uint64_t end = logical + length;
  if (!stop_early && end >= logical && end <= UINT64_MAX - sectorsize) {
    const uint64_t sectors = (end + sectorsize - 1) / sectorsize - first_sector;
    if (visits != sectors) {
      __builtin_trap();
    }
  }
  return 0;
}
