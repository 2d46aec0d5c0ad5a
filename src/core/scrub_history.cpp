// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum scrub --history: checksum failures from the kernel log, resolved to files.
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/subvolume.hpp>
#include <vmcsum/core/kernel_log_reader.hpp>
#include <vmcsum/core/scrub.hpp>
#include <vmcsum/core/subvol_paths.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/mount_table.hpp>

#include <cstring>
#include <filesystem>
#include <memory>

#include <fcntl.h>
#include <linux/btrfs.h>
#include <sys/ioctl.h>

namespace vmcsum::core {

namespace {

std::string base(const std::string& p)
{
  auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

// The first (inode, root) referencing the extent that holds `logical` (scrub lines name the
// start of a 64 KiB stripe, which need not be referenced itself).
std::optional<std::pair<uint64_t, uint64_t>> logical_ino(int fd, uint64_t logical)
{
  try {
    auto refs = btrfs::extent_refs(fd, logical, {}, 1);
    if (!refs.empty()) {
      return std::make_pair(refs.front().inode, refs.front().root);
    }
  } catch (const Error&) {
    // unresolved
  }
  return std::nullopt;
}

bool on_device(const MountedSubvol& m, const std::string& dev)
{
  return std::find(m.devices.begin(), m.devices.end(), base(dev)) != m.devices.end();
}

void resolve(HistoryEvent& h, const std::vector<MountedSubvol>& mounts)
{
  auto& e = h.event;
  bool have_root = e.root && *e.root >= 0;
  uint64_t root = have_root ? static_cast<uint64_t>(*e.root) : 0;
  bool have_ino = e.ino.has_value();
  uint64_t ino = e.ino.value_or(0);
  if (!have_ino && e.logical) {
    for (const auto& m : mounts) {
      if (on_device(m, e.device)) {
        if (auto r = logical_ino(m.fd->get(), *e.logical)) {
          ino = r->first;
          root = r->second;
          have_ino = have_root = true;
        }
        break;
      }
    }
  }
  if (!have_ino || !have_root) {
    return;
  }
  h.path =
    inode_path(mounts, root, ino, [&](const MountedSubvol& m) { return on_device(m, e.device); });
}

std::string canonical(const std::string& p)
{
  std::error_code ec;
  auto c = std::filesystem::weakly_canonical(p, ec);
  return ec ? p : c.string();
}

} // namespace

ScrubResult scrub_history(const std::vector<std::string>& paths, const HistoryOptions& opts)
{
  ScrubResult r;
  std::vector<HistoryEvent> all;
  if (!opts.kernel_log.empty()) {
    for (auto& e : read_kernel_log(opts.kernel_log, r.notes)) {
      all.push_back({std::move(e), "kmsg", std::nullopt, std::nullopt, std::nullopt});
    }
  }
  if (opts.journal) {
    for (auto& je : read_journal_kernel_log(r.notes, opts.journal_dir)) {
      all.push_back({std::move(je.event), "journal", std::nullopt, je.boot_id, je.realtime_us});
    }
  }
  const auto mounts = btrfs_mounts(opts.mountinfo);
  std::vector<std::string> wanted;
  for (const auto& p : paths) {
    wanted.push_back(canonical(p));
  }
  for (auto& h : all) {
    if (h.event.kind == CsumLogEvent::Kind::dev_stats) {
      continue;
    }
    resolve(h, mounts);
    if (!wanted.empty()) {
      if (!h.path) {
        continue;
      }
      const std::string c = canonical(*h.path);
      bool keep = false;
      for (const auto& w : wanted) {
        keep = keep || c == w ||
               (c.size() > w.size() && c.compare(0, w.size(), w) == 0 && c[w.size()] == '/');
      }
      if (!keep) {
        continue;
      }
    }
    r.history.push_back(std::move(h));
  }
  return r;
}

} // namespace vmcsum::core
