// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The image-write safety module: see include/vmcsum/write/guard.hpp.
#include <vmcsum/error.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/lease.hpp>
#include <vmcsum/write/guard.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace vmcsum::core {

namespace {

constexpr size_t k_max_locks = 64; // locks listed per file

// The one name table of Outcome.
constexpr std::array<std::pair<Outcome, std::string_view>, 12> k_outcome_names{{
  {Outcome::flag_set, "flag-set"},
  {Outcome::rewritten, "rewritten"},
  {Outcome::unchanged, "unchanged"},
  {Outcome::skipped, "skipped"},
  {Outcome::repaired, "repaired"},
  {Outcome::clean, "clean"},
  {Outcome::left, "left"},
  {Outcome::restored, "restored"},
  {Outcome::would_repair, "would-repair"},
  {Outcome::would_restore, "would-restore"},
  {Outcome::refused, "refused"},
  {Outcome::failed, "failed"},
}};

std::string users_text(const std::vector<ImageUser>& users)
{
  std::string s;
  for (const auto& u : users) {
    std::string how = u.writable ? "write" : "read";
    if (u.o_direct) {
      how += ", O_DIRECT";
    }
    s += (s.empty() ? "" : ", ") + u.comm + "[" + std::to_string(u.pid) + "] (" + how + ")";
  }
  return s;
}

std::string locks_text(const std::vector<ImageLock>& locks)
{
  std::string s;
  for (const auto& l : locks) {
    std::string range = "bytes " + std::to_string(l.start) + "-" +
                        (l.end ? std::to_string(*l.end) : std::string("EOF"));
    std::string who = l.pid ? " by pid " + std::to_string(*l.pid) : std::string();
    s += (s.empty() ? "" : ", ") + l.kind + " " + l.mode + " lock on " + range + who +
         (l.qemu ? " (QEMU's image lock)" : "");
  }
  return s;
}

ImageLock lock_from_flock(const struct flock& fl)
{
  FileLock l;
  // The kernel reports -1 as the pid of OFD locks (they belong to an open file description).
  l.kind = fl.l_pid == -1 ? "OFDLCK" : "POSIX";
  if (fl.l_pid > 0) {
    l.pid = fl.l_pid;
  }
  l.mode = fl.l_type == F_WRLCK ? "WRITE" : "READ";
  l.start = static_cast<uint64_t>(fl.l_start);
  if (fl.l_len > 0) {
    l.end = static_cast<uint64_t>(fl.l_start + fl.l_len - 1);
  }
  return image_lock(l, std::nullopt, "F_OFD_GETLK");
}

// Locks on the file as seen through fd: F_OFD_GETLK asks the kernel which lock would conflict
// with a write lock on a range; splitting the range around each answer finds them all.
std::vector<ImageLock> probe_locks(int fd)
{
  std::vector<ImageLock> found;
  struct Span
  {
    uint64_t start;
    std::optional<uint64_t> end; // exclusive; nullopt = EOF
  };
  std::vector<Span> todo{{0, std::nullopt}};
  int queries = 0;
  while (!todo.empty() && found.size() < k_max_locks && queries < 256) {
    Span s = todo.back();
    todo.pop_back();
    struct flock fl
    {
    };
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(s.start);
    fl.l_len = s.end ? static_cast<off_t>(*s.end - s.start) : 0;
    ++queries;
    if (::fcntl(fd, F_OFD_GETLK, &fl) < 0 || fl.l_type == F_UNLCK) {
      continue;
    }
    ImageLock l = lock_from_flock(fl);
    bool dup = std::any_of(found.begin(), found.end(), [&](const ImageLock& o) {
      return o.start == l.start && o.end == l.end && o.mode == l.mode && o.pid == l.pid;
    });
    if (dup) {
      continue;
    }
    found.push_back(l);
    if (l.start > s.start) {
      todo.push_back({s.start, std::min(l.start, s.end.value_or(l.start))});
    }
    if (l.end && (!s.end || *l.end + 1 < *s.end)) {
      todo.push_back({*l.end + 1, s.end});
    }
  }
  return found;
}

} // namespace

std::string_view outcome_name(Outcome o)
{
  for (const auto& [value, name] : k_outcome_names) {
    if (value == o) {
      return name;
    }
  }
  return "failed";
}

std::optional<Outcome> outcome_from_name(std::string_view name)
{
  for (const auto& [value, n] : k_outcome_names) {
    if (n == name) {
      return value;
    }
  }
  return std::nullopt;
}

ImageUsers find_users(int fd, const ProcScan& procs)
{
  struct stat st = {};
  if (fd < 0 || ::fstat(fd, &st) < 0) {
    return {};
  }
  ImageUsers out = users_in_scan(procs, st.st_dev, st.st_ino, static_cast<int>(::getpid()));
  for (const auto& l : probe_locks(fd)) {
    bool known = std::any_of(out.locks.begin(), out.locks.end(), [&](const ImageLock& o) {
      return o.start == l.start && o.end == l.end && o.mode == l.mode && o.kind == l.kind;
    });
    if (!known) {
      out.locks.push_back(l);
    }
  }
  return out;
}

ImageUsers find_users(const std::string& path, const ProcScan& procs)
{
  sys::Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  return fd ? find_users(fd.get(), procs) : ImageUsers{};
}

std::vector<Refusal> in_use_refusals(const std::vector<ImageUser>& users,
                                     const std::vector<ImageLock>& locks)
{
  std::vector<Refusal> out;
  if (!users.empty()) {
    out.push_back({refusal_code::in_use, "is open by " + users_text(users) +
                                           ": stop the VM (or whatever uses it) first"});
  }
  if (!locks.empty()) {
    out.push_back({refusal_code::locked, "is locked: " + locks_text(locks)});
  }
  return out;
}

void refuse_if_in_use(int fd, const ProcScan& procs, std::vector<ImageUser>& users,
                      std::vector<ImageLock>& locks)
{
  ImageUsers u = find_users(fd, procs);
  users = std::move(u.users);
  locks = std::move(u.locks);
  const auto refusals = in_use_refusals(users, locks);
  if (refusals.empty()) {
    return;
  }
  std::string why;
  for (const auto& r : refusals) {
    why += (why.empty() ? "" : "; ") + r.message;
  }
  throw WriteStop{Outcome::refused, refusals.front().code, why};
}

Refusal refuse_read_only()
{
  return {refusal_code::read_only, "the filesystem or subvolume is read-only"};
}

Refusal refuse_not_regular(const std::string& kind)
{
  return {refusal_code::not_regular,
          "is a " + kind + ": only regular files and directories have this attribute"};
}

Refusal refuse_immutable(uint32_t attr_flags, const std::string& path)
{
  return {refusal_code::immutable,
          std::string("is ") + ((attr_flags & FS_IMMUTABLE_FL) ? "immutable" : "append-only") +
            ": it cannot be replaced; clear that first (chattr -i -a " + path + ")"};
}

Refusal refuse_hard_links(uint64_t nlink)
{
  return {refusal_code::hard_links,
          "has " + std::to_string(nlink) +
            " hard links: a rewrite gives this name a new inode and the other names would keep "
            "the old one; remove the other links first"};
}

Refusal refuse_no_space(uint64_t needed, uint64_t data, uint64_t margin, uint64_t free_bytes)
{
  return {refusal_code::no_space, "needs " + human_bytes(needed) + " free (" + human_bytes(data) +
                                    " of data + " + human_bytes(margin) +
                                    " margin) for the copy, the filesystem has " +
                                    human_bytes(free_bytes)};
}

void stop_refused(std::string code, std::string message)
{
  throw WriteStop{Outcome::refused, std::move(code), std::move(message)};
}

void stop_failed(std::string code, std::string message)
{
  throw WriteStop{Outcome::failed, std::move(code), std::move(message)};
}

WriteStop stop_from_errno(int err, const std::string& code, const std::string& what)
{
  const std::string message = what + ": " + errno_text(err);
  if (err == EROFS) {
    return {Outcome::refused, refusal_code::read_only, message};
  }
  if (err == ENOSPC || err == EDQUOT) {
    return {Outcome::failed, refusal_code::no_space, message};
  }
  return {Outcome::failed, code, message};
}

void stop_on_errno(int err, const std::string& code, const std::string& what)
{
  throw stop_from_errno(err, code, what);
}

WriteStop stop_from_error(const Error& err, const std::string& code)
{
  if (err.sys_errno() != 0) {
    WriteStop s = stop_from_errno(err.sys_errno(), code, "");
    s.message = err.what();
    return s;
  }
  switch (err.code()) {
  case Errc::usage:
    return {Outcome::refused, code, err.what()};
  default:
    return {Outcome::failed, code, err.what()};
  }
}

std::optional<Refusal> read_only_refusal(int fd)
{
  struct statvfs sv
  {
  };
  if (::fstatvfs(fd, &sv) == 0 && (sv.f_flag & ST_RDONLY) != 0) {
    return refuse_read_only();
  }
  // AT_EMPTY_PATH: the inode of fd itself (faccessat2, Linux 5.8; glibc 2.36 calls it when
  // flags are given). Older kernels say EINVAL/ENOSYS: then only the mount flag is known.
  if (::faccessat(fd, "", W_OK, AT_EMPTY_PATH | AT_EACCESS) < 0 && errno == EROFS) {
    return refuse_read_only();
  }
  return std::nullopt;
}

CancelCheck::CancelCheck(const std::atomic<bool>& cancel, std::string interrupted_message,
                         std::string in_use_message)
  : m_cancel(cancel)
  , m_interrupted(std::move(interrupted_message))
  , m_in_use(std::move(in_use_message))
{
}

void CancelCheck::operator()() const
{
  if (m_cancel.load()) {
    stop_failed(refusal_code::interrupted, m_interrupted);
  }
  if (m_lease && m_lease->broken()) {
    stop_failed(refusal_code::in_use, m_in_use);
  }
}

} // namespace vmcsum::core
