// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// raid56_probe: exercises the RAID5/6 mapping and parity code (btrfs/raid56.hpp) on one file of
// a mounted btrfs with RAID5/6 data, so the integration test can hold them against btrfs-progs
// and the bytes on the devices. For each sector it prints one JSON line:
//   {"file_offset":0,"logical":N,"row":N,"full_logical":N,"data_index":0,
//    "devid":1,"device":"/dev/loop0","physical":N,
//    "data":[{"devid":1,"physical":N},...],"p":{...},"q":{...}|null,
//    "data_match":true|false|null, "p_ok":bool, "q_ok":bool|null,
//    "from_p_match":bool|null, "from_q_match":bool|null, "from_pq_match":bool|null}
// data/p/q are the full stripe's units (their first byte); physical is the sector's own.
// data_match: the device bytes against the csum tree; p_ok/q_ok: the sector-sized slices at the
// sector's offset in every unit satisfy P (Q); from_*_match: the sector rebuilt from the other
// data units and P, from them and Q, and (RAID6, with another data unit also treated as lost)
// from P and Q matches the csum tree. null where the csum tree has no csum or RAID5 has no Q.
//   raid56_probe FILE
// Needs root (TREE_SEARCH, reading block devices). Exit 0, or 1 with a message on stderr.
#include "probe_common.hpp"

#include <vmcsum/btrfs/csum_tree.hpp>
#include <vmcsum/btrfs/raid56.hpp>
#include <vmcsum/checksum.hpp>
#include <vmcsum/sys/aligned_buffer.hpp>

#include <nlohmann/json.hpp>

#include <iostream>
#include <map>
#include <string>
#include <vector>

using namespace vmcsum;
using probe_tool::k_not_1to1;
using json = nlohmann::ordered_json;
namespace raid56 = btrfs::raid56;

namespace {

json unit_json(const btrfs::StripeUnit& u)
{
  return json{{"devid", u.devid}, {"physical", u.physical}};
}

class Devices
{
public:
  Devices(std::map<uint64_t, std::string> paths, uint32_t ss)
    : m_paths(std::move(paths))
    , m_ss(ss)
  {
  }
  const std::string& path(uint64_t devid) const { return m_paths.at(devid); }
  // One sector at `physical` of devid, read with O_DIRECT (what is on the medium).
  void read(uint64_t devid, uint64_t physical, uint8_t* out)
  {
    auto it = m_fds.find(devid);
    if (it == m_fds.end()) {
      it = m_fds.emplace(devid, sys::open_or_throw(path(devid), O_RDONLY | O_DIRECT)).first;
    }
    const ssize_t n = ::pread(*it->second, out, m_ss, static_cast<off_t>(physical));
    if (n != static_cast<ssize_t>(m_ss)) {
      throw Error(Errc::io, "short read at " + std::to_string(physical), path(devid));
    }
  }

private:
  std::map<uint64_t, std::string> m_paths;
  std::map<uint64_t, sys::Fd> m_fds;
  uint32_t m_ss;
};

json probe_sector(const btrfs::Chunk& chunk, uint64_t logical, std::span<const uint8_t> expected,
                  Devices& devs, Checksummer& sum, uint32_t ss)
{
  const auto place = btrfs::map_raid56(chunk, logical);
  const auto& f = place.full;
  const size_t n = f.data.size();
  std::vector<sys::AlignedBuffer> data;
  std::vector<std::span<const uint8_t>> views;
  for (const auto& u : f.data) {
    data.emplace_back(ss);
    devs.read(u.devid, u.physical + place.unit_offset, data.back().data());
    views.emplace_back(data.back().data(), ss);
  }
  sys::AlignedBuffer p(ss), q(ss), out(ss), out2(ss);
  devs.read(f.p.devid, f.p.physical + place.unit_offset, p.data());
  if (f.q) {
    devs.read(f.q->devid, f.q->physical + place.unit_offset, q.data());
  }
  const auto matches = [&](const uint8_t* bytes) -> json {
    if (expected.empty()) {
      return nullptr;
    }
    uint8_t got[Checksummer::k_max_size];
    sum.compute({bytes, ss}, got);
    return std::equal(expected.begin(), expected.end(), got);
  };
  json line;
  line["logical"] = logical;
  line["row"] = f.row;
  line["full_logical"] = f.logical;
  line["data_index"] = place.data_index;
  line["devid"] = place.devid();
  line["device"] = devs.path(place.devid());
  line["physical"] = place.physical();
  line["data"] = json::array();
  for (const auto& u : f.data) {
    line["data"].push_back(unit_json(u));
  }
  line["p"] = unit_json(f.p);
  line["q"] = f.q ? unit_json(*f.q) : json(nullptr);
  line["data_match"] = matches(data[place.data_index].data());
  line["p_ok"] = raid56::p_matches(views, {p.data(), ss});
  line["q_ok"] = f.q ? json(raid56::q_matches(views, {q.data(), ss})) : json(nullptr);
  const unsigned a = place.data_index;
  auto lost = views;
  lost[a] = {};
  raid56::rebuild_from_p(lost, a, {p.data(), ss}, {out.data(), ss});
  line["from_p_match"] = matches(out.data());
  line["from_q_match"] = nullptr;
  line["from_pq_match"] = nullptr;
  if (f.q) {
    raid56::rebuild_from_q(lost, a, {q.data(), ss}, {out.data(), ss});
    line["from_q_match"] = matches(out.data());
    if (n >= 2) {
      const unsigned b = static_cast<unsigned>((a + 1) % n);
      lost[b] = {};
      raid56::rebuild_two(lost, a, b, {p.data(), ss}, {q.data(), ss}, {out.data(), ss},
                          {out2.data(), ss});
      line["from_pq_match"] = matches(out.data());
    }
  }
  return line;
}

int run(const std::string& file)
{
  const probe_tool::Probed probed = probe_tool::open_probed(file);
  const sys::Fd& fd = probed.fd;
  const auto& info = probed.info;
  const auto& chunks = probed.chunks;
  const auto& extents = probed.extents;
  Devices devs(probed.paths, info.sectorsize);
  Checksummer sum(info.csum_type);
  const uint32_t ss = info.sectorsize;
  btrfs::RangeCsums stored;
  for (const auto& e : extents) {
    if ((e.flags & k_not_1to1) || e.physical % ss != 0) {
      continue;
    }
    btrfs::read_csums(*fd, info, e.physical, e.length, stored, file);
    for (size_t i = 0; i < stored.sectors(); ++i) {
      const uint64_t logical = stored.logical + i * ss;
      const btrfs::Chunk* chunk = chunks.find(logical);
      if (!chunk) {
        throw Error(Errc::not_found, "no chunk maps " + std::to_string(logical), file);
      }
      json line{{"file_offset", e.logical + (logical - e.physical)}};
      line.update(probe_sector(*chunk, logical, stored.csum(i), devs, sum, ss));
      std::cout << line << '\n';
    }
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
  return probe_tool::probe_main(argc, argv, "raid56_probe", run);
}
