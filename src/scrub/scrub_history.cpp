// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// vmcsum scrub --history: checksum failures from the kernel log, resolved to files.
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/btrfs/subvolume.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/kernel_log_reader.hpp>
#include <vmcsum/host/kernel_record.hpp>
#include <vmcsum/host/subvol_paths.hpp>
#include <vmcsum/scrub/scrub.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/mount_table.hpp>

#include <algorithm>
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

// Whether mount m is the filesystem the event was logged for: its device name, and, where the
// log said which filesystem that name stood for then, that filesystem (a loop device named in an
// old event may belong to another filesystem now).
bool on_device(const MountedSubvol& m, const CsumLogEvent& e)
{
  if (e.fsid && *e.fsid != m.fsid) {
    return false;
  }
  return std::find(m.devices.begin(), m.devices.end(), base(e.device)) != m.devices.end();
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
      if (on_device(m, e)) {
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
  h.path = inode_path(mounts, root, ino, [&](const MountedSubvol& m) {
    if (!on_device(m, e)) {
      return false;
    }
    h.fsid = m.fsid;
    return true;
  });
  if (h.path) {
    h.subvolume = root;
    h.inode = ino;
  } else {
    h.fsid.clear();
  }
}

// Marks the events of files healed since (healed_of() of the state's outcome for the inode).
void mark_healed(std::vector<HistoryEvent>& events, const std::vector<ScrubState>& states)
{
  for (auto& h : events) {
    if (h.fsid.empty() || h.caused_by_vmcsum) {
      continue;
    }
    const std::optional<uint64_t> last = h.last_timestamp ? h.last_timestamp : h.timestamp;
    for (const auto& s : states) {
      if (s.fsid != h.fsid) {
        continue;
      }
      for (const auto& o : s.outcomes) {
        if (o.subvolume == h.subvolume && o.inode == h.inode) {
          const auto healed = healed_of(o);
          if (healed && last && *last < healed->at_us) {
            h.healed = healed;
          }
        }
      }
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

std::vector<HistoryEvent> merge_history(std::vector<HistoryEvent> events)
{
  std::vector<HistoryEvent> out;
  auto same = [](const HistoryEvent& a, const HistoryEvent& b) {
    const auto &x = a.event, &y = b.event;
    return x.kind == y.kind && x.device == y.device && x.root == y.root && x.ino == y.ino &&
           x.offset == y.offset && x.logical == y.logical && x.mirror == y.mirror &&
           x.csum == y.csum && x.expected_csum == y.expected_csum &&
           a.caused_by_vmcsum == b.caused_by_vmcsum;
  };
  for (auto& e : events) {
    auto it =
      std::find_if(out.begin(), out.end(), [&](const HistoryEvent& o) { return same(o, e); });
    if (it == out.end()) {
      if (!e.last_timestamp) {
        e.last_timestamp = e.timestamp;
      }
      out.push_back(std::move(e));
      continue;
    }
    it->count += e.count;
    const auto last = e.last_timestamp ? e.last_timestamp : e.timestamp;
    if (e.timestamp && (!it->timestamp || *e.timestamp < *it->timestamp)) {
      it->timestamp = e.timestamp;
      it->since_boot_us = e.since_boot_us;
      it->boot = e.boot;
      it->source = e.source;
    }
    if (last && (!it->last_timestamp || *last > *it->last_timestamp)) {
      it->last_timestamp = last;
    }
    if (!it->path && e.path) {
      it->path = e.path;
      it->fsid = e.fsid;
      it->subvolume = e.subvolume;
      it->inode = e.inode;
    }
  }
  return out;
}

void mark_own_reads(std::vector<HistoryEvent>& events, const std::vector<ReadWindow>& windows)
{
  for (auto& h : events) {
    const auto& e = h.event;
    // Only reads through btrfs fail this way: scrub lines come from `btrfs scrub`, not vmcsum.
    if (e.kind != CsumLogEvent::Kind::read_csum_failed &&
        e.kind != CsumLogEvent::Kind::read_repaired) {
      continue;
    }
    EventWhen w;
    w.device = base(e.device);
    w.root = e.root;
    w.ino = e.ino;
    w.offset = e.offset;
    w.boot_id = h.boot;
    w.mono_us = h.since_boot_us;
    w.real_us = h.timestamp;
    h.caused_by_vmcsum = std::any_of(windows.begin(), windows.end(),
                                     [&](const ReadWindow& rw) { return event_in_window(w, rw); });
  }
}

ScrubResult scrub_history(const std::vector<std::string>& paths, const HistoryOptions& opts)
{
  ScrubResult r;
  std::vector<HistoryEvent> all;
  if (!opts.kernel_log.empty()) {
    // printk times are since boot; kernel_log_reader.hpp says why CLOCK_MONOTONIC's epoch.
    const uint64_t epoch = printk_epoch_offset_us();
    const std::string boot = current_boot_id();
    for (auto& e : read_kernel_log_timed(opts.kernel_log, r.notes)) {
      HistoryEvent h;
      h.event = std::move(e.event);
      h.source = "kmsg";
      h.boot = boot;
      h.since_boot_us = e.since_boot_us;
      if (e.since_boot_us) {
        h.timestamp = kmsg_time_to_epoch_us(*e.since_boot_us, epoch);
      }
      all.push_back(std::move(h));
    }
  }
  if (opts.journal) {
    for (auto& je : read_journal_kernel_log(r.notes, opts.journal_dir)) {
      HistoryEvent h;
      h.event = std::move(je.event);
      h.source = "journal";
      h.boot = je.boot_id;
      h.timestamp = je.realtime_us;
      all.push_back(std::move(h));
    }
  }
  std::vector<ReadWindow> windows;
  const std::vector<ScrubState> states = load_all_scrub_states(opts.state_dir, r.notes);
  for (const auto& s : states) {
    windows.insert(windows.end(), s.windows.begin(), s.windows.end());
  }
  if (opts.extra_windows) {
    windows.insert(windows.end(), opts.extra_windows->begin(), opts.extra_windows->end());
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
  mark_own_reads(r.history, windows);
  r.history = merge_history(std::move(r.history));
  mark_healed(r.history, states);
  return r;
}

} // namespace vmcsum::core
