// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Scrub on RAID5/RAID6 data (issue 17). The mapping and the parity arithmetic are
// src/btrfs/raid56.cpp (map_raid56, ISA-L); this file decides what scrub reads with them.
#include "scrub_raid56.hpp"

#include <vmcsum/btrfs/raid56.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>

#include <algorithm>
#include <cstring>
#include <optional>

namespace vmcsum::core {

namespace {

using Units = std::vector<std::span<const uint8_t>>;

// One sector-wide slice of a full stripe: the same offset in every member (data units, P, Q),
// read from the devices. `ok[i]`: member i was read.
struct Slice
{
  std::vector<sys::AlignedBuffer> bufs; // data units, then P, then Q
  std::vector<bool> ok;
  size_t ndata = 0;
  uint32_t ss = 0;

  std::span<const uint8_t> at(size_t i) const { return {bufs[i].get(), ss}; }
  // The data units with `skip_a` and `skip_b` left empty (not read by the rebuild), or nullopt
  // when another one could not be read.
  std::optional<Units> data_without(size_t skip_a, size_t skip_b = SIZE_MAX) const
  {
    Units d(ndata);
    for (size_t j = 0; j < ndata; ++j) {
      if (j == skip_a || j == skip_b) {
        continue;
      }
      if (!ok[j]) {
        return std::nullopt;
      }
      d[j] = at(j);
    }
    return d;
  }
};

Slice read_slice(const btrfs::Raid56Place& pl, uint32_t ss, const DeviceRead& read)
{
  const auto& full = pl.full;
  std::vector<btrfs::StripeUnit> members(full.data.begin(), full.data.end());
  members.push_back(full.p);
  if (full.q) {
    members.push_back(*full.q);
  }
  Slice s;
  s.ndata = full.data.size();
  s.ss = ss;
  for (size_t i = 0; i < members.size(); ++i) {
    s.bufs.push_back(sys::aligned_buffer(ss));
    // The sector being rebuilt is not read: a rebuild must not depend on it.
    s.ok.push_back(
      i != pl.data_index &&
      read(members[i].devid, members[i].physical + pl.unit_offset, s.bufs[i].get(), ss));
  }
  return s;
}

RebuiltCopy make_copy(const char* kind, unsigned mirror, const btrfs::StripeUnit& parity,
                      uint64_t unit_offset, const std::map<uint64_t, std::string>& dev_paths)
{
  RebuiltCopy r;
  r.copy.mirror = mirror;
  r.copy.rebuilt = kind;
  r.copy.devid = parity.devid;
  auto p = dev_paths.find(parity.devid);
  r.copy.device = p == dev_paths.end() ? "" : p->second;
  r.copy.physical = parity.physical + unit_offset;
  r.copy.read_error = true; // until its bytes are computed
  return r;
}

void set_bytes(RebuiltCopy& r, std::vector<uint8_t> bytes, Checksummer& sum,
               std::span<const uint8_t> expected)
{
  const auto got = sum.compute(bytes);
  r.copy.csum = to_hex(got);
  r.copy.matches = std::equal(got.begin(), got.end(), expected.begin(), expected.end());
  r.copy.read_error = false;
  r.bytes = std::move(bytes);
}

} // namespace

std::vector<btrfs::Copy> device_copies(const btrfs::ChunkMap& chunks, uint64_t logical)
{
  const btrfs::Chunk* c = chunks.find(logical);
  if (c && btrfs::is_raid56(*c)) {
    // A full stripe never crosses its chunk's end (the chunk holds whole rows), so the unit's
    // end bounds the contiguous run.
    const auto pl = btrfs::map_raid56(*c, logical);
    return {{1, pl.devid(), pl.physical(), pl.full.stripe_len - pl.unit_offset}};
  }
  return chunks.map(logical);
}

// A copy's Copy::length ends at its RAID0/RAID10 stripe unit, but the next unit often lies
// right after it on the same device (RAID10 over two devices keeps every unit on both; RAID0
// over one device), and then the stretch goes on across it: pieces the size of a stripe unit
// (64 KiB) left raid10 at 0.38x of dd (bench/scrub_throughput.sh). Never across a chunk's end,
// nor across RAID5/6 units (scrub notes their full stripes one piece at a time for the parity
// check).
uint64_t contiguous_length(const btrfs::ChunkMap& chunks, uint64_t logical, uint64_t want)
{
  const auto first = device_copies(chunks, logical);
  uint64_t len = want;
  for (const auto& c : first) {
    len = std::min(len, c.length);
  }
  const btrfs::Chunk* chunk = chunks.find(logical);
  if (!chunk || btrfs::is_raid56(*chunk) || first.empty()) {
    return len;
  }
  while (len < want && chunks.find(logical + len) == chunk) {
    const auto next = device_copies(chunks, logical + len);
    if (next.size() != first.size()) {
      break;
    }
    uint64_t step = want - len;
    for (size_t i = 0; i < next.size(); ++i) {
      if (next[i].devid != first[i].devid || next[i].physical != first[i].physical + len) {
        return len;
      }
      step = std::min(step, next[i].length);
    }
    len += step;
  }
  return len;
}

std::optional<uint64_t> full_stripe_of(const btrfs::ChunkMap& chunks, uint64_t logical)
{
  const btrfs::Chunk* c = chunks.find(logical);
  if (!c || !btrfs::is_raid56(*c)) {
    return std::nullopt;
  }
  return btrfs::map_raid56(*c, logical).full.logical;
}

std::vector<RebuiltCopy> rebuilt_copies(const btrfs::Chunk& chunk, uint64_t logical, uint32_t ss,
                                        const DeviceRead& read, Checksummer& sum,
                                        std::span<const uint8_t> expected,
                                        const std::map<uint64_t, std::string>& dev_paths,
                                        unsigned next_mirror)
{
  namespace r56 = btrfs::raid56;
  const auto pl = btrfs::map_raid56(chunk, logical);
  const size_t a = pl.data_index;
  const Slice s = read_slice(pl, ss, read);
  const size_t ip = s.ndata, iq = s.ndata + 1;
  std::vector<RebuiltCopy> out;

  // Mirror 2 of the kernel's RAID5/6 read retry is this rebuild (raid56.c recover_sectors()).
  out.push_back(make_copy("from-p", next_mirror++, pl.full.p, pl.unit_offset, dev_paths));
  if (auto d = s.data_without(a); d && s.ok[ip]) {
    std::vector<uint8_t> b(ss);
    r56::rebuild_from_p(*d, static_cast<unsigned>(a), s.at(ip), b);
    set_bytes(out.back(), std::move(b), sum, expected);
  }
  if (!pl.full.q) {
    return out;
  }
  out.push_back(make_copy("from-q", next_mirror++, *pl.full.q, pl.unit_offset, dev_paths));
  if (auto d = s.data_without(a); d && s.ok[iq]) {
    std::vector<uint8_t> b(ss);
    r56::rebuild_from_q(*d, static_cast<unsigned>(a), s.at(iq), b);
    set_bytes(out.back(), std::move(b), sum, expected);
  }
  // Two lost data units of one row: the kernel's RAID6 retries (mirror 3 and up) take another
  // unit as failed too. The one whose choice gives a matching sector is reported, else the
  // first that could be computed.
  if (s.ndata < 2) {
    return out;
  }
  // A read error (nothing computed) when P or Q cannot be read.
  RebuiltCopy best = make_copy("from-p-q", next_mirror, *pl.full.q, pl.unit_offset, dev_paths);
  for (size_t other = 0; other < s.ndata && s.ok[ip] && s.ok[iq] && !best.copy.matches; ++other) {
    auto d = other == a ? std::nullopt : s.data_without(a, other);
    if (!d) {
      continue;
    }
    std::vector<uint8_t> ba(ss), bb(ss);
    r56::rebuild_two(*d, static_cast<unsigned>(a), static_cast<unsigned>(other), s.at(ip), s.at(iq),
                     ba, bb);
    RebuiltCopy c = make_copy("from-p-q", next_mirror, *pl.full.q, pl.unit_offset, dev_paths);
    set_bytes(c, std::move(ba), sum, expected);
    if (best.copy.read_error || c.copy.matches) {
      best = std::move(c);
    }
  }
  out.push_back(std::move(best));
  return out;
}

namespace {

std::vector<btrfs::StripeUnit> members_of(const btrfs::FullStripe& full)
{
  std::vector<btrfs::StripeUnit> m(full.data.begin(), full.data.end());
  m.push_back(full.p);
  if (full.q) {
    m.push_back(*full.q);
  }
  return m;
}

// P (and Q) of one full stripe against its members' bytes (`bytes[i]`: member i, stripe_len).
void check_row(const btrfs::FullStripe& full, const std::vector<const uint8_t*>& bytes, uint32_t ss,
               const std::map<uint64_t, std::string>& dev_paths,
               const std::set<uint64_t>& bad_logicals, FileScrub& f)
{
  namespace r56 = btrfs::raid56;
  const uint64_t len = full.stripe_len;
  const size_t n = full.data.size();
  ++f.parity_checked_stripes;
  Units data;
  for (size_t j = 0; j < n; ++j) {
    data.emplace_back(bytes[j], len);
  }
  sys::AlignedBuffer want_p = sys::aligned_buffer(len), want_q = sys::aligned_buffer(len);
  if (full.q) {
    r56::gen_pq(data, {want_p.get(), len}, {want_q.get(), len});
  } else {
    r56::gen_p(data, {want_p.get(), len});
  }
  const auto compare = [&](const char* kind, const btrfs::StripeUnit& unit, const uint8_t* want,
                           const uint8_t* stored) {
    ParityMismatch m;
    for (uint64_t off = 0; off < len; off += ss) {
      if (std::memcmp(want + off, stored + off, ss) == 0) {
        continue;
      }
      m.first_offset = m.sectors++ == 0 ? off : m.first_offset;
      bool explained = false;
      for (size_t j = 0; j < n && !explained; ++j) {
        explained = bad_logicals.count(full.logical + j * len + off) != 0;
      }
      m.stale_sectors += explained ? 0 : 1;
    }
    if (m.sectors == 0) {
      return;
    }
    m.logical = full.logical;
    m.parity = kind;
    m.devid = unit.devid;
    auto p = dev_paths.find(unit.devid);
    m.device = p == dev_paths.end() ? "" : p->second;
    m.physical = unit.physical;
    f.parity.push_back(std::move(m));
  };
  compare("p", full.p, want_p.get(), bytes[n]);
  if (full.q) {
    compare("q", *full.q, want_q.get(), bytes[n + 1]);
  }
}

} // namespace

void check_full_stripe(const btrfs::Chunk& chunk, uint64_t full_logical, uint32_t ss,
                       const DeviceRead& read, const std::map<uint64_t, std::string>& dev_paths,
                       const std::set<uint64_t>& bad_logicals, FileScrub& f)
{
  const auto full = btrfs::map_raid56(chunk, full_logical).full;
  const uint64_t len = full.stripe_len;
  std::vector<sys::AlignedBuffer> units;
  std::vector<const uint8_t*> bytes;
  for (const auto& m : members_of(full)) {
    units.push_back(sys::aligned_buffer(len));
    bytes.push_back(units.back().get());
    if (!read(m.devid, m.physical, units.back().get(), len)) {
      // One note per device, not per full stripe: a degraded image has one on every row.
      const std::string note = "device " + std::to_string(m.devid) +
                               " could not be read (missing or I/O error): the parity of full "
                               "stripes with a unit on it was not checked";
      if (std::find(f.notes.begin(), f.notes.end(), note) == f.notes.end()) {
        f.notes.push_back(note);
      }
      return;
    }
  }
  check_row(full, bytes, ss, dev_paths, bad_logicals, f);
}

void check_full_stripes(const btrfs::Chunk& chunk, uint64_t first_logical, uint64_t rows,
                        uint32_t ss, const DeviceRead& read,
                        const std::map<uint64_t, std::string>& dev_paths,
                        const std::set<uint64_t>& bad_logicals, FileScrub& f)
{
  const auto first = btrfs::map_raid56(chunk, first_logical).full;
  const uint64_t len = first.stripe_len;
  // Row r of the chunk lies at stripe offset + r * stripe_len on every device: consecutive rows
  // are one contiguous read per device.
  std::vector<sys::AlignedBuffer> dev(chunk.stripes.size());
  bool ok = true;
  for (size_t s = 0; s < chunk.stripes.size() && ok; ++s) {
    dev[s] = sys::aligned_buffer(rows * len);
    ok = read(chunk.stripes[s].devid, chunk.stripes[s].offset + first.row * len, dev[s].get(),
              rows * len);
  }
  const uint64_t row_bytes = first.data.size() * len;
  for (uint64_t t = 0; t < rows; ++t) {
    const uint64_t logical = first_logical + t * row_bytes;
    if (!ok) {
      // Row by row, so only the rows with a unit that cannot be read go unchecked.
      check_full_stripe(chunk, logical, ss, read, dev_paths, bad_logicals, f);
      continue;
    }
    const auto full = btrfs::map_raid56(chunk, logical).full;
    std::vector<const uint8_t*> bytes;
    for (const auto& m : members_of(full)) {
      // RAID5/6 puts one stripe of a chunk on each device: the devid names the buffer.
      size_t s = 0;
      while (chunk.stripes[s].devid != m.devid) {
        ++s;
      }
      bytes.push_back(dev[s].get() + (m.physical - chunk.stripes[s].offset - first.row * len));
    }
    check_row(full, bytes, ss, dev_paths, bad_logicals, f);
  }
}

} // namespace vmcsum::core
