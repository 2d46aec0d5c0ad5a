// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Durable temp files: see include/vmcsum/sys/temp_file.hpp.
#include <vmcsum/error.hpp>
#include <vmcsum/sys/dir_reader.hpp>
#include <vmcsum/sys/temp_file.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace vmcsum::sys {

namespace {

constexpr const char* k_marker = ".vmcsum-tmp.";
constexpr size_t k_random_len = 6;

std::string join(const std::string& dir, const std::string& name)
{
  return dir == "/" ? "/" + name : dir + "/" + name;
}

// The marker value of dirfd/name seen through fd, if `xattr` holds exactly `name`.
bool marker_is(int fd, const char* xattr, const std::string& name)
{
  char buf[NAME_MAX + 1];
  ssize_t n = ::fgetxattr(fd, xattr, buf, sizeof buf);
  return n >= 0 && std::string(buf, static_cast<size_t>(n)) == name;
}

// The proof that dirfd/name (open as fd, owned by uid) was made by vmcsum: see the header.
bool proven_ours(int fd, const std::string& name, uid_t uid)
{
  if (marker_is(fd, k_temp_marker_trusted, name)) {
    return true;
  }
  const uid_t me = ::geteuid();
  return me != 0 && uid == me && marker_is(fd, k_temp_marker_user, name);
}

} // namespace

// A directory's default ACL is inherited by every file created in it, the temp file too: its
// named entries (user:mallory:rw) are masked by the creation mode (0600: mask ---) until the
// mode is widened, and the rewrite then copies the source's mode (0660: mask rw-) and the
// source's xattrs, not an absence of them. The copy of a file mallory could not read became
// hers to read and write. Dropped at creation, so the file holds only what the caller gives it.
void drop_inherited_acl(int fd, const std::string& where)
{
  for (const char* name : {"system.posix_acl_access", "system.posix_acl_default"}) {
    if (::fremovexattr(fd, name) < 0 && errno != ENODATA && errno != EOPNOTSUPP) {
      throw_errno(std::string("remove the inherited ACL (") + name + ") of a new file", where);
    }
  }
}

std::string random_alnum(size_t n)
{
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string bytes(n, '\0');
  if (::getrandom(bytes.data(), n, 0) != static_cast<ssize_t>(n)) {
    // getrandom cannot fail for a few bytes once the pool is ready; fall back to the clock.
    auto t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    for (auto& b : bytes) {
      b = static_cast<char>(t);
      t = t * 6364136223846793005ULL + 1442695040888963407ULL;
      t ^= t >> 29;
    }
  }
  std::string s;
  for (char b : bytes) {
    s += alphabet[static_cast<unsigned char>(b) % (sizeof alphabet - 1)];
  }
  return s;
}

std::string temp_name_for(const std::string& target, const std::string& random6)
{
  const size_t overhead = 1 + std::char_traits<char>::length(k_marker) + random6.size();
  size_t keep = target.size();
  if (keep + overhead > NAME_MAX) {
    keep = NAME_MAX - overhead;
    // Do not cut a UTF-8 sequence in half: back off over continuation bytes.
    while (keep > 0 && (static_cast<unsigned char>(target[keep]) & 0xC0) == 0x80) {
      --keep;
    }
  }
  return "." + target.substr(0, keep) + k_marker + random6;
}

bool is_temp_name(const std::string& entry)
{
  const size_t marker = std::char_traits<char>::length(k_marker);
  if (entry.size() < 1 + 1 + marker + k_random_len || entry[0] != '.') {
    return false;
  }
  const size_t at = entry.size() - k_random_len - marker;
  if (entry.compare(at, marker, k_marker) != 0) {
    return false;
  }
  return std::all_of(entry.end() - k_random_len, entry.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; });
}

bool is_temp_name_for(const std::string& entry, const std::string& target)
{
  return is_temp_name(entry) &&
         entry == temp_name_for(target, entry.substr(entry.size() - k_random_len));
}

bool is_temp_marker_xattr(std::string_view xattr_name)
{
  return xattr_name == k_temp_marker_trusted || xattr_name == k_temp_marker_user;
}

std::string mark_temp(int fd, const std::string& name)
{
  for (const char* xattr : {k_temp_marker_trusted, k_temp_marker_user}) {
    if (::fsetxattr(fd, xattr, name.data(), name.size(), 0) == 0) {
      return xattr;
    }
  }
  return {};
}

void unmark_temp(int fd)
{
  ::fremovexattr(fd, k_temp_marker_trusted);
  ::fremovexattr(fd, k_temp_marker_user);
}

TempFile::TempFile(int dirfd, const std::string& target, const std::string& display_dir,
                   unsigned mode)
  : m_dirfd(::fcntl(dirfd, F_DUPFD_CLOEXEC, 3))
  , m_dir(display_dir)
{
  if (!m_dirfd) {
    throw_errno("dup the directory descriptor", display_dir);
  }
  if (!create_anonymous(target, mode)) {
    create_named(target, mode);
  }
  m_display = join(m_dir, m_name);
}

TempFile::~TempFile()
{
  if (m_armed && !m_name.empty()) {
    ::unlinkat(m_dirfd.get(), m_name.c_str(), 0);
  }
}

// False when the filesystem has no O_TMPFILE (EOPNOTSUPP; EISDIR/EINVAL from kernels that
// predate it).
bool TempFile::create_anonymous(const std::string& target, unsigned mode)
{
  m_fd.reset(::openat(m_dirfd.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode));
  if (!m_fd) {
    if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
      return false;
    }
    throw_errno("create a temp file (O_TMPFILE)", m_dir);
  }
  if (::flock(m_fd.get(), LOCK_EX | LOCK_NB) < 0) {
    throw_errno("flock a new temp file", m_dir);
  }
  drop_inherited_acl(m_fd.get(), m_dir); // before it has a name anyone can open
  const std::string proc = "/proc/self/fd/" + std::to_string(m_fd.get());
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string name = temp_name_for(target, random_alnum(k_random_len));
    mark(name);
    // The /proc link works without CAP_DAC_READ_SEARCH (which AT_EMPTY_PATH needs); the
    // latter is the way when /proc is not mounted.
    int rc = ::linkat(AT_FDCWD, proc.c_str(), m_dirfd.get(), name.c_str(), AT_SYMLINK_FOLLOW);
    if (rc < 0 && errno == ENOENT) {
      rc = ::linkat(m_fd.get(), "", m_dirfd.get(), name.c_str(), AT_EMPTY_PATH);
    }
    if (rc == 0) {
      m_name = name;
      return true;
    }
    if (errno != EEXIST) {
      throw_errno("link the temp file " + name, m_dir);
    }
  }
  throw Error(Errc::io, "could not create a temp file with a new name", m_dir, EEXIST);
}

void TempFile::create_named(const std::string& target, unsigned mode)
{
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string name = temp_name_for(target, random_alnum(k_random_len));
    m_fd.reset(::openat(m_dirfd.get(), name.c_str(),
                        O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (m_fd) {
      m_name = name;
      break;
    }
    if (errno != EEXIST) {
      throw_errno("create a temp file", m_dir);
    }
  }
  if (!m_fd) {
    throw Error(Errc::io, "could not create a temp file with a new name", m_dir, EEXIST);
  }
  if (::flock(m_fd.get(), LOCK_EX | LOCK_NB) < 0) {
    throw_errno("flock", join(m_dir, m_name));
  }
  // Named from the start: until this, the inherited ACL's entries are masked by `mode`.
  drop_inherited_acl(m_fd.get(), join(m_dir, m_name));
  mark(m_name);
}

// No marker at all (a filesystem without xattrs) is not an error: the file then is never
// removed as a leftover, only reported.
void TempFile::mark(const std::string& name)
{
  m_marker = mark_temp(m_fd.get(), name);
}

void TempFile::drop_marker()
{
  if (!m_marker.empty()) {
    ::fremovexattr(m_fd.get(), m_marker.c_str());
    m_marker.clear();
  }
}

void TempFile::commit(const std::string& target, Replace replace)
{
  if (::fsync(m_fd.get()) < 0) {
    throw_errno("fsync", m_display);
  }
  const int r =
    replace == Replace::yes
      ? ::renameat(m_dirfd.get(), m_name.c_str(), m_dirfd.get(), target.c_str())
      : ::renameat2(m_dirfd.get(), m_name.c_str(), m_dirfd.get(), target.c_str(), RENAME_NOREPLACE);
  if (r < 0) {
    throw_errno("rename " + m_display + " to", join(m_dir, target));
  }
  m_armed = false;
  // A kill between the rename and this leaves the marker on the committed file: harmless, it
  // names the temp name, not the file's.
  drop_marker();
  ::fsync(m_fd.get());
  if (::fsync(m_dirfd.get()) < 0) {
    throw_errno("fsync", m_dir);
  }
}

std::optional<StaleTemp> remove_stale_temp(int dirfd, const std::string& name, bool dry_run)
{
  StaleTemp t;
  t.name = name;
  struct stat lst
  {
  };
  if (::fstatat(dirfd, name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(lst.st_mode)) {
    return std::nullopt; // gone meanwhile, or not something vmcsum made
  }
  Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st
  {
  };
  if (!fd || ::fstat(fd.get(), &st) < 0) {
    t.why = "cannot open it: " + errno_text(errno);
    return t;
  }
  if (st.st_dev != lst.st_dev || st.st_ino != lst.st_ino) {
    t.why = "kept: it was replaced while vmcsum looked at it";
    return t;
  }
  // A running vmcsum holds an exclusive flock on its temp file until it is done with it.
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
    t.why = errno == EWOULDBLOCK ? "kept: another vmcsum is working on it right now"
                                 : "kept: flock: " + errno_text(errno);
    return t;
  }
  if (!proven_ours(fd.get(), name, st.st_uid)) {
    t.why = std::string("kept: named like a vmcsum temp file but not marked as one (") +
            k_temp_marker_trusted + "): never removed";
    return t;
  }
  if (dry_run) {
    t.why = "dry run: not removed";
    return t;
  }
  // The name must still be the inode just proven ours (a swap in between would make us
  // remove something else; whoever can swap names here could remove it themselves).
  struct stat again
  {
  };
  if (::fstatat(dirfd, name.c_str(), &again, AT_SYMLINK_NOFOLLOW) < 0 ||
      again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
    t.why = "kept: it was replaced while vmcsum looked at it";
    return t;
  }
  if (::unlinkat(dirfd, name.c_str(), 0) < 0) {
    t.why = "unlink: " + errno_text(errno);
    return t;
  }
  t.removed = true;
  ::fsync(dirfd);
  return t;
}

std::vector<StaleTemp>
remove_stale_temps(int dirfd, const std::function<bool(const std::string&)>& match, bool dry_run)
{
  std::vector<StaleTemp> out;
  // A descriptor of its own: a dup would share (and move) the caller's directory offset.
  Fd own(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!own) {
    return out;
  }
  std::vector<std::string> found;
  DirReader entries(own.get());
  while (const auto* ent = entries.next()) {
    if (match(ent->d_name)) {
      found.emplace_back(ent->d_name);
    }
  }
  std::sort(found.begin(), found.end());
  for (const auto& f : found) {
    if (auto t = remove_stale_temp(dirfd, f, dry_run)) {
      out.push_back(std::move(*t));
    }
  }
  return out;
}

} // namespace vmcsum::sys
