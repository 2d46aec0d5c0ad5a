// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum scrub --history: checksum failures from the kernel log, resolved to files.
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/subvolume.hpp>
#include <vmcsum/core/kernel_log_reader.hpp>
#include <vmcsum/core/scrub.hpp>
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

struct MountedSubvol
{
  std::string target;
  uint64_t root = 0;
  std::vector<std::string> devices; // basenames, as the log's "(device X)" tag names them
  std::shared_ptr<sys::Fd> fd;
};

std::string base(const std::string& p)
{
  auto s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::vector<MountedSubvol> btrfs_mounts(const std::string& mountinfo)
{
  std::vector<MountedSubvol> out;
  for (const auto& m : sys::MountTable(mountinfo).of_type("btrfs")) {
    try {
      MountedSubvol s;
      s.target = m.target;
      s.fd = std::make_shared<sys::Fd>(
        sys::open_or_throw(m.target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
      s.root = btrfs::subvolume_id(s.fd->get(), m.target);
      s.devices.push_back(base(m.source));
      auto info = btrfs::fs_info(s.fd->get(), m.target);
      for (const auto& d : btrfs::dev_infos(s.fd->get(), info, m.target)) {
        s.devices.push_back(base(d.path));
      }
      out.push_back(std::move(s));
    } catch (const Error&) {
      // unreachable mount point: its events stay unresolved
    }
  }
  return out;
}

// The first path of inode `ino` in the subvolume of fd, relative to it.
std::optional<std::string> ino_path(int fd, uint64_t ino)
{
  try {
    auto names = btrfs::inode_paths(fd, ino, {}, 1);
    if (!names.empty()) {
      return names.front();
    }
  } catch (const Error&) {
    // unresolved
  }
  return std::nullopt;
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
  for (const auto& m : mounts) {
    if (m.root == root && on_device(m, e.device)) {
      if (auto p = ino_path(m.fd->get(), ino)) {
        h.path = (std::filesystem::path(m.target) / *p).lexically_normal().string();
        return;
      }
    }
  }
  // A subvolume not mounted by itself: its directory below a mounted ancestor subvolume.
  for (const auto& m : mounts) {
    if (m.root == root || !on_device(m, e.device)) {
      continue;
    }
    try {
      const std::string sub = btrfs::subvolume_path(m.fd->get(), root, m.target);
      const std::string mine = btrfs::subvolume_path(m.fd->get(), m.root, m.target);
      if (!mine.empty() && sub.compare(0, mine.size() + 1, mine + "/") != 0) {
        continue;
      }
      const auto dir =
        std::filesystem::path(m.target) / sub.substr(mine.empty() ? 0 : mine.size() + 1);
      sys::Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd || btrfs::subvolume_id(fd.get(), dir.string()) != root) {
        continue;
      }
      if (auto p = ino_path(fd.get(), ino)) {
        h.path = (dir / *p).lexically_normal().string();
        return;
      }
    } catch (const Error&) {
      // not below this mount, or not root: try the next one
    }
  }
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
