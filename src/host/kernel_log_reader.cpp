// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/host/journal_api.hpp>
#include <vmcsum/host/kernel_log_reader.hpp>
#include <vmcsum/sys/fd.hpp>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string_view>

#include <charconv>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

namespace vmcsum::core {

std::optional<uint64_t> kernel_log_line_time_us(std::string_view line)
{
  // Only decimal digits, and a value that fits: from_chars refuses one past 2^64 (a corrupt or
  // forged line must not wrap into a time inside a scrub's read window).
  auto digits = [](std::string_view s, uint64_t& v) {
    if (s.empty() || s.front() < '0' || s.front() > '9') {
      return false;
    }
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc{} && end == s.data() + s.size();
  };
  // dmesg: "[  12.345678] ..." (seconds with six decimals)
  size_t i = 0;
  while (i < line.size() && line[i] == ' ') {
    ++i;
  }
  if (i < line.size() && line[i] == '[') {
    const auto close = line.find(']', i);
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view t = line.substr(i + 1, close - i - 1);
    while (!t.empty() && t.front() == ' ') {
      t.remove_prefix(1);
    }
    const auto dot = t.find('.');
    uint64_t sec = 0, frac = 0;
    if (dot == std::string_view::npos || !digits(t.substr(0, dot), sec) ||
        t.size() - dot - 1 != 6 || !digits(t.substr(dot + 1), frac) ||
        sec > (UINT64_MAX - frac) / 1000000) {
      return std::nullopt;
    }
    return sec * 1000000 + frac;
  }
  // /dev/kmsg: "prio,seq,usec,flags[,more];message" (Documentation/ABI/testing/dev-kmsg)
  const auto semi = line.find(';');
  if (semi == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view head = line.substr(0, semi);
  uint64_t fields[3] = {0, 0, 0};
  for (int f = 0; f < 3; ++f) {
    const auto comma = head.find(',');
    if (comma == std::string_view::npos || !digits(head.substr(0, comma), fields[f])) {
      return std::nullopt;
    }
    head.remove_prefix(comma + 1);
  }
  return fields[2];
}

uint64_t kmsg_time_to_epoch_us(uint64_t since_boot_us, uint64_t boot_epoch_us)
{
  const uint64_t sum = since_boot_us + boot_epoch_us;
  return sum < since_boot_us ? UINT64_MAX : sum;
}

namespace {
uint64_t clock_us(clockid_t id)
{
  struct timespec ts = {};
  ::clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}
} // namespace

uint64_t monotonic_now_us()
{
  return clock_us(CLOCK_MONOTONIC);
}

uint64_t realtime_now_us()
{
  return clock_us(CLOCK_REALTIME);
}

uint64_t printk_epoch_offset_us()
{
  const uint64_t real = realtime_now_us();
  const uint64_t mono = monotonic_now_us();
  return real > mono ? real - mono : 0;
}

namespace {
// Device name -> the filesystem it stands for now, as the log itself has said (loop devices are
// reused by one test or image after another: a name alone does not tell the filesystem).
using DeviceFsids = std::map<std::string, std::string>;

// One line: a binding (remembered) or an event (attributed to the filesystem of its device).
std::optional<CsumLogEvent> attributed(std::string_view line, DeviceFsids& fsids)
{
  if (auto b = parse_device_fsid_line(line)) {
    fsids[b->device] = b->fsid;
    return std::nullopt;
  }
  auto ev = parse_kernel_log_line(line);
  if (ev) {
    if (auto it = fsids.find(ev->device); it != fsids.end()) {
      ev->fsid = it->second;
    }
  }
  return ev;
}
} // namespace

std::vector<CsumLogEvent> read_kernel_log(const std::string& path, std::vector<std::string>& notes)
{
  std::vector<CsumLogEvent> out;
  for (auto& t : read_kernel_log_timed(path, notes)) {
    out.push_back(std::move(t.event));
  }
  return out;
}

// /dev/kmsg gives one record per read, non-blocking so the end of the buffer is EAGAIN, not a
// wait.
std::vector<TimedLogEvent> read_kernel_log_timed(const std::string& path,
                                                 std::vector<std::string>& notes)
{
  std::vector<TimedLogEvent> events;
  DeviceFsids fsids;
  sys::Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    notes.push_back("kernel log " + path + " not read: " + errno_text(errno));
    return events;
  }
  struct stat st = {};
  ::fstat(fd.get(), &st);
  if (S_ISCHR(st.st_mode)) {
    char buf[8192];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EPIPE) {
          continue; // records overwritten while reading: go on with the next one
        }
        if (errno != EAGAIN) {
          notes.push_back("kernel log " + path + ": " + errno_text(errno));
        }
        break;
      }
      if (n == 0) {
        break;
      }
      std::string_view rec(buf, static_cast<size_t>(n));
      rec = rec.substr(0, rec.find('\n'));
      if (auto ev = attributed(rec, fsids)) {
        events.push_back({std::move(*ev), kernel_log_line_time_us(rec)});
      }
    }
    return events;
  }
  if (!S_ISREG(st.st_mode)) {
    notes.push_back("kernel log " + path + " is neither /dev/kmsg nor a file");
    return events;
  }
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (auto ev = attributed(line, fsids)) {
      events.push_back({std::move(*ev), kernel_log_line_time_us(line)});
    }
  }
  return events;
}

std::vector<JournalEvent> read_journal_kernel_log(std::vector<std::string>& notes,
                                                  const std::string& directory)
{
  std::vector<JournalEvent> out;
  const std::string what = directory.empty() ? "journal" : "journal " + directory;
  std::string why;
  const JournalApi* sd = journal_api(&why);
  if (!sd) {
    notes.push_back(what + " not read: " + why);
    return out;
  }
  sd_journal* raw = nullptr;
  int r = 0;
  struct stat st = {};
  if (directory.empty()) {
    r = sd->open(&raw, SD_JOURNAL_LOCAL_ONLY | SD_JOURNAL_SYSTEM);
  } else if (::stat(directory.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    const char* files[] = {directory.c_str(), nullptr};
    r = sd->open_files(&raw, files, 0);
  } else {
    // sd_journal_open_directory() opens an empty journal for a missing directory; say so.
    r =
      ::stat(directory.c_str(), &st) == 0 ? sd->open_directory(&raw, directory.c_str(), 0) : -errno;
  }
  if (r < 0) {
    notes.push_back(what + " not read: " + errno_text(-r));
    return out;
  }
  std::unique_ptr<sd_journal, decltype(sd->close)> j(raw, sd->close);
  sd_id128_t this_boot = {};
  const bool have_boot = sd->id128_get_boot(&this_boot) >= 0;
  sd->add_match(j.get(), "_TRANSPORT=kernel", 0);
  DeviceFsids fsids;
  sd_id128_t fsids_boot = SD_ID128_NULL;
  // SD_JOURNAL_FOREACH, through the loaded functions.
  for (sd->seek_head(j.get()); sd->next(j.get()) > 0;) {
    const void* data = nullptr;
    size_t len = 0;
    if (sd->get_data(j.get(), "MESSAGE", &data, &len) < 0) {
      continue;
    }
    std::string_view msg(static_cast<const char*>(data), len);
    msg.remove_prefix(std::min<size_t>(msg.size(), 8)); // "MESSAGE="
    if (msg.find("BTRFS") == std::string_view::npos) {
      continue;
    }
    uint64_t usec = 0;
    sd_id128_t boot = {};
    sd->get_monotonic_usec(j.get(), nullptr, &boot);
    if (!sd_id128_equal(boot, fsids_boot)) {
      fsids.clear(); // device names are per boot
      fsids_boot = boot;
    }
    auto ev = attributed(msg, fsids);
    if (!ev) {
      continue;
    }
    if (have_boot && sd_id128_equal(boot, this_boot)) {
      continue; // this boot comes from /dev/kmsg
    }
    sd->get_realtime_usec(j.get(), &usec);
    char id[SD_ID128_STRING_MAX];
    out.push_back({std::move(*ev), sd->id128_to_string(boot, id), usec});
  }
  return out;
}

} // namespace vmcsum::core
