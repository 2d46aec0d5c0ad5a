// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/error.hpp>

#include <cerrno>
#include <cstring>
#include <memory>

#include <linux/btrfs.h>
#include <sys/ioctl.h>

namespace vmcsum::btrfs {

bool next_key(Key& k)
{
  if (k.offset != ~0ULL) {
    ++k.offset;
    return true;
  }
  k.offset = 0;
  if (k.type != 0xff) {
    ++k.type;
    return true;
  }
  k.type = 0;
  if (k.objectid != ~0ULL) {
    ++k.objectid;
    return true;
  }
  return false;
}

namespace {
bool key_less_equal(const Key& a, const Key& b)
{
  if (a.objectid != b.objectid) {
    return a.objectid < b.objectid;
  }
  if (a.type != b.type) {
    return a.type < b.type;
  }
  return a.offset <= b.offset;
}
} // namespace

bool decode_search_buffer(std::span<const uint8_t> buf, uint32_t nr_items, const ItemVisitor& visit,
                          Key& last, const std::string& path)
{
  size_t pos = 0;
  for (uint32_t i = 0; i < nr_items; ++i) {
    btrfs_ioctl_search_header hdr;
    // Compared as remaining sizes, never as pos + len, so a huge len cannot wrap around.
    if (buf.size() - pos < sizeof hdr) {
      throw Error(Errc::internal, "BTRFS_IOC_TREE_SEARCH_V2: item header overruns the buffer",
                  path);
    }
    std::memcpy(&hdr, buf.data() + pos, sizeof hdr);
    pos += sizeof hdr;
    if (buf.size() - pos < hdr.len) {
      throw Error(Errc::internal, "BTRFS_IOC_TREE_SEARCH_V2: item overruns the buffer", path);
    }
    last = {hdr.objectid, static_cast<uint8_t>(hdr.type), hdr.offset};
    // The kernel walks whole keys in order, so items with a type outside [min,max] can
    // appear between objectids; the caller filters on what it needs.
    if (!visit(last, buf.subspan(pos, hdr.len))) {
      return false;
    }
    pos += hdr.len;
  }
  return true;
}

void tree_search(int fd, const SearchRange& range, const ItemVisitor& visit,
                 const std::string& path)
{
  const size_t buf_size = range.batch_bytes;
  const size_t total = sizeof(btrfs_ioctl_search_args_v2) + buf_size;
  auto storage = std::make_unique<uint64_t[]>((total + 7) / 8);
  auto* args = reinterpret_cast<btrfs_ioctl_search_args_v2*>(storage.get());

  Key cursor = range.min;
  for (;;) {
    std::memset(args, 0, sizeof(*args));
    auto& sk = args->key;
    sk.tree_id = range.tree_id;
    sk.min_objectid = cursor.objectid;
    sk.min_type = cursor.type;
    sk.min_offset = cursor.offset;
    sk.max_objectid = range.max.objectid;
    sk.max_type = range.max.type;
    sk.max_offset = range.max.offset;
    sk.min_transid = range.min_transid;
    sk.max_transid = ~0ULL;
    sk.nr_items = ~0U;
    args->buf_size = buf_size;
    if (::ioctl(fd, BTRFS_IOC_TREE_SEARCH_V2, args) < 0) {
      throw_errno("BTRFS_IOC_TREE_SEARCH_V2", path);
    }
    if (sk.nr_items == 0) {
      return;
    }
    const auto* buf = reinterpret_cast<const uint8_t*>(args->buf);
    Key last;
    if (!decode_search_buffer({buf, buf_size}, sk.nr_items, visit, last, path)) {
      return;
    }
    cursor = last;
    if (!next_key(cursor) || !key_less_equal(cursor, range.max)) {
      return;
    }
  }
}

} // namespace vmcsum::btrfs
