// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/csum_tree.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/error.hpp>

#include <algorithm>
#include <cstring>
#include <utility>

#include <linux/btrfs_tree.h>

namespace vmcsum::btrfs {

namespace {
// struct btrfs_header (csum[32], fsid[16], bytenr, flags, chunk_tree_uuid[16], generation,
// owner, nritems u32, level u8) and struct btrfs_item (disk key 17, offset u32, size u32) are
// packed on disk (kernel accessors.h / ctree.h; not in Debian 12's uapi header).
constexpr uint32_t k_header_size = 101;
constexpr uint32_t k_item_size = 25;
} // namespace

uint64_t max_csum_item_span(uint32_t nodesize, uint32_t sectorsize, uint16_t csum_size)
{
  if (csum_size == 0 || nodesize <= k_header_size + k_item_size) {
    throw Error(Errc::internal, "max_csum_item_span: bad nodesize or csum_size");
  }
  return uint64_t{(nodesize - k_header_size - k_item_size) / csum_size} * sectorsize;
}

CsumRangeWalker::CsumRangeWalker(uint64_t logical, uint64_t length, uint32_t sectorsize,
                                 uint16_t csum_size, SectorCsumVisitor visit)
  : m_sectorsize(sectorsize)
  , m_csum_size(csum_size)
  , m_visit(std::move(visit))
{
  if (sectorsize == 0 || csum_size == 0) {
    throw Error(Errc::internal, "CsumRangeWalker: sectorsize and csum_size must be non-zero");
  }
  m_next = logical / sectorsize * sectorsize;
  const uint64_t end = logical + length;
  m_end = (end + sectorsize - 1) / sectorsize * sectorsize;
}

bool CsumRangeWalker::emit_missing(uint64_t until)
{
  until = std::min(until, m_end);
  while (!m_stopped && m_next < until) {
    if (!m_visit(m_next, {})) {
      m_stopped = true;
    }
    m_next += m_sectorsize;
  }
  return !m_stopped;
}

bool CsumRangeWalker::feed(uint64_t item_start, std::span<const uint8_t> item)
{
  if (m_stopped || m_next >= m_end) {
    return false;
  }
  // check_csum_item() in the kernel's tree-checker.c rejects both of these.
  if (item_start % m_sectorsize != 0 || item.empty() || item.size() % m_csum_size != 0) {
    throw Error(Errc::internal, "malformed csum item at logical " + std::to_string(item_start) +
                                  " (size " + std::to_string(item.size()) + ")");
  }
  const uint64_t item_end = item_start + item.size() / m_csum_size * m_sectorsize;
  if (item_end <= m_next) {
    return true; // before the range, or already visited
  }
  // Sectors between the last item and this one have no csum.
  if (!emit_missing(item_start)) {
    return false;
  }
  const uint64_t stop = std::min(item_end, m_end);
  while (m_next < stop) {
    const size_t index = (m_next - item_start) / m_sectorsize;
    if (!m_visit(m_next, item.subspan(index * m_csum_size, m_csum_size))) {
      m_stopped = true;
      return false;
    }
    m_next += m_sectorsize;
  }
  return m_next < m_end;
}

void CsumRangeWalker::finish()
{
  emit_missing(m_end);
}

void for_each_sector_csum(int fd, const FsInfo& info, uint64_t logical, uint64_t length,
                          const SectorCsumVisitor& visit, const std::string& path)
{
  if (!info.csum_info_valid || info.csum_size == 0 || info.sectorsize == 0) {
    throw Error(Errc::unsupported, "the kernel does not report the checksum type and size", path);
  }
  if (length == 0) {
    return;
  }
  CsumRangeWalker walker(logical, length, info.sectorsize, info.csum_size, visit);
  // TREE_SEARCH only walks forward, and an item covering `logical` may start before it: start
  // where the longest possible item that still reaches `logical` would begin, and let the
  // walker skip what ends earlier. That costs at most about one leaf of extra items.
  const uint64_t first = logical / info.sectorsize * info.sectorsize;
  const uint64_t span = max_csum_item_span(info.nodesize, info.sectorsize, info.csum_size);
  const uint64_t end = logical + length - 1;
  SearchRange range;
  range.tree_id = BTRFS_CSUM_TREE_OBJECTID;
  range.min = {BTRFS_EXTENT_CSUM_OBJECTID, BTRFS_EXTENT_CSUM_KEY,
               first >= span ? first - span + 1 : 0};
  range.max = {BTRFS_EXTENT_CSUM_OBJECTID, BTRFS_EXTENT_CSUM_KEY, end};
  tree_search(
    fd, range,
    [&](const Key& key, std::span<const uint8_t> data) {
      if (key.objectid != BTRFS_EXTENT_CSUM_OBJECTID || key.type != BTRFS_EXTENT_CSUM_KEY) {
        return true;
      }
      return walker.feed(key.offset, data);
    },
    path);
  walker.finish();
}

std::span<const uint8_t> RangeCsums::csum(size_t i) const
{
  if (!has(i)) {
    return {};
  }
  return std::span<const uint8_t>(csums).subspan(i * csum_size, csum_size);
}

void read_csums(int fd, const FsInfo& info, uint64_t logical, uint64_t length, RangeCsums& out,
                const std::string& path)
{
  if (info.sectorsize == 0) {
    throw Error(Errc::unsupported, "the kernel does not report the sector size", path);
  }
  out.sectorsize = info.sectorsize;
  out.csum_size = info.csum_size;
  out.logical = logical / info.sectorsize * info.sectorsize;
  const uint64_t end = (logical + length + info.sectorsize - 1) / info.sectorsize * info.sectorsize;
  const size_t n = (end - out.logical) / info.sectorsize;
  out.present.assign(n, 0);
  out.csums.assign(n * info.csum_size, 0);
  for_each_sector_csum(
    fd, info, logical, length,
    [&](uint64_t sector, std::span<const uint8_t> csum) {
      if (!csum.empty()) {
        const size_t i = (sector - out.logical) / out.sectorsize;
        out.present[i] = 1;
        std::memcpy(out.csums.data() + i * out.csum_size, csum.data(), csum.size());
      }
      return true;
    },
    path);
}

} // namespace vmcsum::btrfs
