// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// core_probe: exercises the scrub foundations (chunk map, csum tree, Checksummer) on one file of
// a mounted btrfs, so the integration test can hold them against btrfs-progs. For each sector it
// prints one JSON line:
//   {"file_offset":0,"logical":N,"csum":"hex"|null,
//    "copies":[{"mirror":1,"devid":1,"device":"/dev/loop0","physical":N,"csum":"hex",
//               "match":true|false|null}]}
// where "csum" at the top is the csum tree's, and each copy's "csum" is computed over the bytes
// read from the device with O_DIRECT. Extents without a 1:1 logical address (compressed,
// inline, delalloc) print {"file_offset":N,"length":N,"skipped":"flags 0x..."} instead.
//   core_probe FILE
// Needs root (TREE_SEARCH, reading block devices). Exit 0, or 1 with a message on stderr.
#include "probe_common.hpp"

#include <vmcsum/btrfs/csum_tree.hpp>
#include <vmcsum/checksum.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace vmcsum;
using probe_tool::k_not_1to1;

namespace {

struct FreeDeleter
{
  void operator()(void* p) const { std::free(p); }
};

int run(const std::string& file)
{
  const probe_tool::Probed probed = probe_tool::open_probed(file);
  const sys::Fd& fd = probed.fd;
  const auto& info = probed.info;
  const auto& chunks = probed.chunks;
  const auto& paths = probed.paths;
  const auto& extents = probed.extents;
  Checksummer sum(info.csum_type);
  const uint32_t ss = info.sectorsize;

  std::map<uint64_t, sys::Fd> devs;
  auto dev_fd = [&](uint64_t devid) -> int {
    auto it = devs.find(devid);
    if (it == devs.end()) {
      auto p = paths.find(devid);
      if (p == paths.end() || p->second.empty()) {
        throw Error(Errc::not_found, "no path for devid " + std::to_string(devid), file);
      }
      // O_DIRECT: the device's page cache may hold stale bytes; we want what is on the medium.
      it = devs.emplace(devid, sys::open_or_throw(p->second, O_RDONLY | O_DIRECT)).first;
    }
    return *it->second;
  };
  void* raw = nullptr;
  if (posix_memalign(&raw, 4096, ss) != 0) {
    throw Error(Errc::internal, "posix_memalign failed");
  }
  std::unique_ptr<uint8_t, FreeDeleter> buf(static_cast<uint8_t*>(raw));
  uint8_t computed[Checksummer::k_max_size];

  constexpr uint64_t batch = 1024 * 1024; // bounded csum lookups, as scrub will do
  btrfs::RangeCsums stored;
  for (const auto& e : extents) {
    if ((e.flags & k_not_1to1) || e.physical % ss != 0 || e.logical % ss != 0) {
      char flags[32];
      std::snprintf(flags, sizeof flags, "flags 0x%x", e.flags);
      std::cout << nlohmann::ordered_json{{"file_offset", e.logical},
                                          {"length", e.length},
                                          {"skipped", flags}}
                << '\n';
      continue;
    }
    for (uint64_t done = 0; done < e.length; done += batch) {
      const uint64_t len = std::min(batch, e.length - done);
      btrfs::read_csums(*fd, info, e.physical + done, len, stored, file);
      for (size_t i = 0; i < stored.sectors(); ++i) {
        const uint64_t logical = stored.logical + i * ss;
        const auto expected = stored.csum(i);
        nlohmann::ordered_json line;
        line["file_offset"] = e.logical + (logical - e.physical);
        line["logical"] = logical;
        line["csum"] = expected.empty() ? nlohmann::ordered_json(nullptr)
                                        : nlohmann::ordered_json(to_hex(expected));
        auto copies = nlohmann::ordered_json::array();
        for (const auto& c : chunks.map(logical)) {
          const int dfd = dev_fd(c.devid);
          const ssize_t n = ::pread(dfd, buf.get(), ss, static_cast<off_t>(c.physical));
          if (n < 0) {
            throw_errno("pread", paths.at(c.devid));
          }
          if (static_cast<size_t>(n) != ss) {
            throw Error(Errc::io, "short read at " + std::to_string(c.physical), paths.at(c.devid));
          }
          sum.compute({buf.get(), ss}, computed);
          const std::span<const uint8_t> got(computed, sum.size());
          nlohmann::ordered_json copy{{"mirror", c.mirror},
                                      {"devid", c.devid},
                                      {"device", paths.at(c.devid)},
                                      {"physical", c.physical},
                                      {"csum", to_hex(got)}};
          copy["match"] = expected.empty()
                            ? nlohmann::ordered_json(nullptr)
                            : nlohmann::ordered_json(std::equal(got.begin(), got.end(),
                                                                expected.begin(), expected.end()));
          copies.push_back(std::move(copy));
        }
        line["copies"] = std::move(copies);
        std::cout << line << '\n';
      }
    }
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}

} // namespace

int main(int argc, char** argv)
{
  return probe_tool::probe_main(argc, argv, "core_probe", run);
}
