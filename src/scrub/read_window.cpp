// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Read windows of this process (scrub's kernel passes, repair's reads through btrfs): apart from
// scrub_state.cpp, whose parsers are fuzzed without the clocks and the boot id.
#include <vmcsum/host/kernel_log_reader.hpp>
#include <vmcsum/host/kernel_record.hpp>
#include <vmcsum/scrub/scrub_state.hpp>

#include <climits>
#include <cstdlib>

#include <unistd.h>

namespace vmcsum::core {

ReadWindow open_read_window(const std::string& fsid, const std::vector<std::string>& device_paths,
                            uint64_t subvolume, uint64_t inode)
{
  ReadWindow win;
  win.boot_id = current_boot_id();
  win.pid = ::getpid();
  win.fsid = fsid;
  auto base = [](const std::string& p) { return p.substr(p.find_last_of('/') + 1); };
  for (const auto& p : device_paths) {
    win.devices.push_back(base(p));
    char real[PATH_MAX];
    if (::realpath(p.c_str(), real) && base(real) != win.devices.back()) {
      win.devices.push_back(base(real));
    }
  }
  win.subvolume = subvolume;
  win.inode = inode;
  win.mono_start_us = monotonic_now_us();
  win.real_start_us = realtime_now_us();
  return win;
}

void close_read_window(ReadWindow& w)
{
  w.mono_end_us = monotonic_now_us();
  w.real_end_us = realtime_now_us();
}

std::optional<std::string> record_read_windows(const std::string& state_dir,
                                               const std::string& fsid,
                                               std::vector<ReadWindow> windows)
{
  ScrubState u;
  u.fsid = fsid;
  u.windows = std::move(windows);
  return merge_scrub_state(state_dir, u, {});
}

} // namespace vmcsum::core
