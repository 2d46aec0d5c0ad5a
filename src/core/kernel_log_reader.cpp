// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/core/kernel_log_reader.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/fd.hpp>

#include <systemd/sd-id128.h>
#include <systemd/sd-journal.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vmcsum::core {

// /dev/kmsg gives one record per read, non-blocking so the end of the buffer is EAGAIN, not a
// wait.
std::vector<CsumLogEvent> read_kernel_log(const std::string& path, std::vector<std::string>& notes)
{
  std::vector<CsumLogEvent> events;
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
      if (auto ev = parse_kernel_log_line(rec)) {
        events.push_back(std::move(*ev));
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
    if (auto ev = parse_kernel_log_line(line)) {
      events.push_back(std::move(*ev));
    }
  }
  return events;
}

std::vector<JournalEvent> read_journal_kernel_log(std::vector<std::string>& notes,
                                                  const std::string& directory)
{
  std::vector<JournalEvent> out;
  sd_journal* raw = nullptr;
  int r = 0;
  struct stat st = {};
  if (directory.empty()) {
    r = sd_journal_open(&raw, SD_JOURNAL_LOCAL_ONLY | SD_JOURNAL_SYSTEM);
  } else if (::stat(directory.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    const char* files[] = {directory.c_str(), nullptr};
    r = sd_journal_open_files(&raw, files, 0);
  } else {
    // sd_journal_open_directory() opens an empty journal for a missing directory; say so.
    r = ::stat(directory.c_str(), &st) == 0 ? sd_journal_open_directory(&raw, directory.c_str(), 0)
                                            : -errno;
  }
  const std::string what = directory.empty() ? "journal" : "journal " + directory;
  if (r < 0) {
    notes.push_back(what + " not read: " + errno_text(-r));
    return out;
  }
  std::unique_ptr<sd_journal, decltype(&sd_journal_close)> j(raw, &sd_journal_close);
  sd_id128_t this_boot = {};
  const bool have_boot = sd_id128_get_boot(&this_boot) >= 0;
  sd_journal_add_match(j.get(), "_TRANSPORT=kernel", 0);
  SD_JOURNAL_FOREACH(j.get())
  {
    const void* data = nullptr;
    size_t len = 0;
    if (sd_journal_get_data(j.get(), "MESSAGE", &data, &len) < 0) {
      continue;
    }
    std::string_view msg(static_cast<const char*>(data), len);
    msg.remove_prefix(std::min<size_t>(msg.size(), 8)); // "MESSAGE="
    if (msg.find("BTRFS") == std::string_view::npos) {
      continue;
    }
    auto ev = parse_kernel_log_line(msg);
    if (!ev) {
      continue;
    }
    uint64_t usec = 0;
    sd_id128_t boot = {};
    sd_journal_get_monotonic_usec(j.get(), nullptr, &boot);
    if (have_boot && sd_id128_equal(boot, this_boot)) {
      continue; // this boot comes from /dev/kmsg
    }
    sd_journal_get_realtime_usec(j.get(), &usec);
    char id[SD_ID128_STRING_MAX];
    out.push_back({std::move(*ev), sd_id128_to_string(boot, id), usec});
  }
  return out;
}

} // namespace vmcsum::core
