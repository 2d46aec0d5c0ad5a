// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/kernel_record.hpp>
#include <vmcsum/sys/durable_file.hpp>
#include <vmcsum/sys/io.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>

namespace vmcsum::core {

namespace {
constexpr std::string_view k_header = "vmcsum-kernel-record 1 ";
constexpr size_t k_max_record = 1 << 20; // ~10,000 boots; more is not a record of ours

std::vector<std::string_view> words(std::string_view line, size_t max_words)
{
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size() && out.size() + 1 < max_words) {
    const size_t sp = line.find(' ', i);
    if (sp == std::string_view::npos) {
      break;
    }
    out.push_back(line.substr(i, sp - i));
    i = sp + 1;
  }
  out.push_back(line.substr(i)); // the rest (a release string has no spaces, but be lenient)
  return out;
}

template <typename T>
bool number(std::string_view s, T& out)
{
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

} // namespace

bool record_word_ok(std::string_view s)
{
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

KernelRecord empty_record(const std::string& fsid)
{
  return KernelRecord(fsid);
}

KernelRecord KernelRecord::parse(std::string_view text, const std::string& fsid)
{
  KernelRecord r(fsid);
  if (text.substr(0, k_header.size()) != k_header) {
    throw Error(Errc::internal, "kernel record line 1: not a vmcsum kernel record");
  }
  size_t lineno = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++lineno;
    auto bad = [&](const char* why) {
      return Error(Errc::internal, "kernel record line " + std::to_string(lineno) + ": " + why);
    };
    if (lineno == 1) {
      if (line.substr(0, k_header.size()) != k_header) {
        throw bad("not a vmcsum kernel record");
      }
      continue;
    }
    if (line.empty()) {
      continue;
    }
    auto w = words(line, 5);
    RecordEntry e;
    if (w.size() != 5 || !number(w[0], e.generation) || !number(w[2], e.time_us) ||
        !record_word_ok(w[1]) || !record_word_ok(w[3]) || !record_word_ok(w[4])) {
      throw bad("malformed entry");
    }
    e.boot_id = w[1];
    e.source = w[3];
    e.release = w[4];
    if (!r.m_entries.empty() && e.generation < r.m_entries.back().generation) {
      throw bad("generations go backwards");
    }
    r.m_entries.push_back(std::move(e));
  }
  return r;
}

std::string KernelRecord::format() const
{
  std::string out = std::string(k_header) + m_fsid + "\n";
  for (const auto& e : m_entries) {
    out += std::to_string(e.generation) + " " + e.boot_id + " " + std::to_string(e.time_us) + " " +
           e.source + " " + e.release + "\n";
  }
  return out;
}

void KernelRecord::add(RecordEntry e)
{
  if (!m_entries.empty() && e.generation < m_entries.back().generation) {
    m_restarted = "its generation went backwards (from " +
                  std::to_string(m_entries.back().generation) + " to " +
                  std::to_string(e.generation) +
                  ": a filesystem restored from a backup, or a copy of another with its fsid); "
                  "the record started afresh, so writes before now are not dated";
    m_entries.clear();
  }
  const size_t n = m_entries.size();
  // Keep the first entry of a boot; replace a later one of the same boot (nothing between two
  // entries of one boot needs the middle one: the kernel is the same).
  if (n >= 2 && m_entries[n - 1].boot_id == e.boot_id && m_entries[n - 2].boot_id == e.boot_id) {
    m_entries[n - 1] = std::move(e);
    return;
  }
  if (n >= 1 && m_entries[n - 1].boot_id == e.boot_id &&
      m_entries[n - 1].generation == e.generation && m_entries[n - 1].source == e.source) {
    return; // nothing changed since
  }
  m_entries.push_back(std::move(e));
}

WriteWindow KernelRecord::window_of(uint64_t generation, const std::string& current_boot) const
{
  // An extent of generation g was written after entry i when g > G_i (the entry was taken after
  // a commit) and before entry i+1 when g <= G_{i+1}.
  auto after = std::find_if(m_entries.begin(), m_entries.end(),
                            [&](const RecordEntry& e) { return e.generation >= generation; });
  WriteWindow w;
  if (after == m_entries.begin()) {
    w.id = "gap:start";
    return w;
  }
  const RecordEntry& prev = *(after - 1);
  const bool same_boot =
    after != m_entries.end() ? after->boot_id == prev.boot_id : prev.boot_id == current_boot;
  if (same_boot) {
    w.known = true;
    w.id = "boot:" + prev.boot_id;
    w.release = prev.release;
    return w;
  }
  w.id = "gap:" + std::to_string(prev.generation);
  return w;
}

std::string current_boot_id()
{
  auto text = sys::read_small_file("/proc/sys/kernel/random/boot_id", 4096);
  std::string id;
  for (char c : text.value_or("")) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
      id += c;
    }
  }
  return id.empty() ? "unknown" : id;
}

std::string current_release()
{
  return sys::kernel_release();
}

KernelRecord load_record(const std::string& state_dir, const std::string& fsid)
{
  // Root acts on what it reads here: only from a directory nobody else can write.
  sys::ensure_private_dir(state_dir);
  auto text = sys::read_small_file(state_dir + "/generations/" + fsid, k_max_record);
  if (!text) {
    return empty_record(fsid);
  }
  return KernelRecord::parse(*text, fsid);
}

KernelRecord record_now(int fd, const std::string& path, const std::string& state_dir,
                        const std::string& source, const std::optional<std::string>& release)
{
  // One vmcsum at a time from reading the generation to saving it (the timers' audit and
  // scrub, the boot unit): another's later generation saved in between would make this one's
  // look like a filesystem gone back in time, and the record start afresh.
  sys::ensure_private_dir(state_dir);
  sys::ensure_private_dir(state_dir + "/generations");
  const auto id = btrfs::fs_info(fd, path);
  const sys::Fd lock = sys::lock_exclusive(state_dir + "/generations/" + id.fsid + ".lock");
  btrfs::sync_fs(fd, path);
  const auto info = btrfs::fs_info(fd, path);
  if (info.generation == 0) {
    throw Error(Errc::unsupported, "the kernel does not report the filesystem generation", path);
  }
  KernelRecord r = empty_record(info.fsid);
  std::optional<std::string> unreadable;
  try {
    r = load_record(state_dir, info.fsid);
  } catch (const Error& e) {
    // A damaged record is replaced: what it held cannot be trusted anyway.
    unreadable = std::string("its saved record was unreadable (") + e.what() +
                 "); the record started afresh, so writes before now are not dated";
  }
  RecordEntry e;
  e.generation = info.generation;
  e.release = release.value_or(current_release());
  if (!record_word_ok(e.release)) {
    if (release) {
      throw Error(Errc::usage, "not a kernel release (one word of printable ASCII): " + e.release);
    }
    e.release = "unknown"; // uname(2) failed, or gave no single word
  }
  e.boot_id = current_boot_id();
  e.time_us = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  e.source = source;
  if (!r.entries().empty()) {
    const RecordEntry& last = r.entries().back();
    if (last.generation == e.generation && last.boot_id == e.boot_id && last.release == e.release &&
        last.source == e.source) {
      // Nothing new: the same kernel at the same generation (an entry's time is only shown).
      // Not rewritten, as a durable replace costs two fsyncs and a rename (15 ms, a tenth of
      // a warm audit of 100k files).
      return r;
    }
  }
  r.add(std::move(e));
  if (unreadable) {
    r.set_restarted(std::move(*unreadable));
  }
  sys::replace_file_durably(state_dir + "/generations", info.fsid, r.format());
  return r;
}

} // namespace vmcsum::core

#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/mount_table.hpp>
#include <vmcsum/sys/path.hpp>

#include <fcntl.h>
#include <linux/magic.h>
#include <set>
#include <sys/vfs.h>

namespace vmcsum::core {

RecordResult record_filesystems(const std::vector<std::string>& paths, const std::string& state_dir,
                                const std::string& source,
                                const std::optional<std::string>& release,
                                const std::string& mountinfo)
{
  RecordResult result;
  result.release = release.value_or(current_release());
  result.boot_id = current_boot_id();
  std::vector<std::string> targets = paths;
  std::optional<sys::MountTable> table;
  try {
    table.emplace(mountinfo);
  } catch (const Error&) {
    if (targets.empty()) {
      throw;
    }
  }
  if (targets.empty()) {
    for (const auto& m : table->of_type("btrfs")) {
      targets.push_back(m.target);
    }
  }
  std::set<std::string> done;
  for (const auto& t : targets) {
    RecordedFs fs;
    fs.mount_point = t;
    // O_PATH would not do for the ioctls; a directory or a file opened read-only, never
    // following a final symlink and never blocking on a FIFO.
    sys::Fd fd(::open(t.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
    try {
      if (!fd) {
        throw_errno(Errc::io, errno, "open", t);
      }
      struct statfs sfs = {};
      if (::fstatfs(*fd, &sfs) == 0 && sfs.f_type != BTRFS_SUPER_MAGIC) {
        throw Error(Errc::not_btrfs, "not on btrfs: nothing to record", t);
      }
      const auto info = btrfs::fs_info(*fd, t);
      fs.fsid = info.fsid;
      // A path given is named by the mount holding it (what the table's MOUNT says), found
      // from the descriptor's own path; the path as given when that cannot be learnt.
      if (const std::string at = sys::path_of_fd(*fd, t); table && at.starts_with('/')) {
        if (auto m = table->find(at)) {
          fs.mount_point = m->target;
        }
      }
      if (!done.insert(info.fsid).second) {
        continue; // another mount of a filesystem already recorded
      }
      auto r = record_now(*fd, t, state_dir, source, release);
      fs.generation = r.entries().back().generation;
      fs.entries = r.entries().size();
      fs.note = r.restarted();
    } catch (const Error& e) {
      // Beside mount_point, which names the path; another path (the state directory) stays.
      fs.error = e.path() == t ? e.detail() : e.what();
    }
    result.filesystems.push_back(std::move(fs));
  }
  return result;
}

} // namespace vmcsum::core
