// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Durable temp files beside a target, for everything vmcsum replaces or commits atomically
// (`set`'s rewrite, `repair`'s backups): a reserved name, created relative to a directory fd
// without ever replacing an existing name, locked while in use, made durable, renamed over the
// target, and recognised later as a leftover of a killed run only with proof that vmcsum made
// it (issue 12 #3: an image named like a temp file must never be deleted).
#pragma once

#include <vmcsum/sys/fd.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmcsum::sys {

// Temp names are ".<target>.vmcsum-tmp.<6 random letters/digits>" in the target's directory,
// <target> shortened (at a UTF-8 boundary) so that the whole fits NAME_MAX. No image is
// plausibly named like that, but the name alone proves nothing: see remove_stale_temp().
std::string temp_name_for(const std::string& target, const std::string& random6);
// A temp name of any target.
bool is_temp_name(const std::string& entry);
// A temp name of `target`.
bool is_temp_name_for(const std::string& entry, const std::string& target);
// n random letters/digits (getrandom).
std::string random_alnum(size_t n);

// Removes the ACL a new file or directory `fd` inherited from its directory's default ACL
// (access and default): the file then holds only the mode its creator gives it. A default ACL
// with user:mallory:rw is masked by a creation mode of 0600, and unmasked by any later chmod
// wider (a rewrite copies its source's mode). Throws Error naming `where`; nothing to do on a
// filesystem without ACLs.
void drop_inherited_acl(int fd, const std::string& where);

// The ownership marker: an xattr whose value is the temp file's own name, set before the name
// exists. trusted.* can only be set by CAP_SYS_ADMIN, so a user cannot forge it on a file of
// theirs; vmcsum running unprivileged uses user.* (which only proves anything about a file that
// user owns). Neither is ever copied from one file to another (is_temp_marker_xattr).
inline constexpr const char* k_temp_marker_trusted = "trusted.vmcsum.temp";
inline constexpr const char* k_temp_marker_user = "user.vmcsum.temp";
bool is_temp_marker_xattr(std::string_view xattr_name);
// Marks fd's inode as the temp file called `name` (trusted.*, else user.*); returns the xattr
// set, or "" when the filesystem takes neither. For an inode about to be moved under a temp
// name, like the original after a RENAME_EXCHANGE, so that a kill then leaves a provable temp.
std::string mark_temp(int fd, const std::string& name);
// Removes both markers from fd's inode (errors ignored: there may be none).
void unmark_temp(int fd);

// A new temp file for `target` in the directory dirfd. The inode is made anonymous
// (O_TMPFILE), locked (flock LOCK_EX: a concurrent vmcsum sees it is in use) and marked first,
// then linked under a fresh temp name (linkat fails on an existing name, like O_EXCL), so a
// SIGKILL at any moment leaves either nothing or a marked, recognisable temp file. Where
// O_TMPFILE is not supported it falls back to openat(O_CREAT|O_EXCL) and marks it right after.
// The name is removed on destruction unless commit()/release_name() happened. Throws Error.
class TempFile
{
public:
  TempFile(int dirfd, const std::string& target, const std::string& display_dir,
           unsigned mode = 0600);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const { return m_fd.get(); }
  int dirfd() const { return m_dirfd.get(); }
  const std::string& name() const { return m_name; }
  const std::string& display_path() const { return m_display; }
  // Whether the destructor removes the name (true until commit or release_name()).
  void arm(bool on) { m_armed = on; }
  bool armed() const { return m_armed; }

  // fsync, renameat(2) over dirfd/target, marker dropped, directory fsync'ed: the temp file
  // is the target now. Throws Error (the temp file stays armed on failure); with Replace::no
  // an existing target is left as it is (renameat2 RENAME_NOREPLACE: EEXIST).
  enum class Replace { yes, no };
  void commit(const std::string& target, Replace replace = Replace::yes);
  // Removes the ownership marker (once the inode is, or is about to be, the real file).
  void drop_marker();

private:
  bool create_anonymous(const std::string& target, unsigned mode);
  void create_named(const std::string& target, unsigned mode);
  void mark(const std::string& name);

  Fd m_dirfd;
  Fd m_fd;
  std::string m_dir;
  std::string m_name;
  std::string m_display;
  std::string m_marker; // the xattr set, "" if none could be
  bool m_armed = true;
};

// What remove_stale_temp() did with a leftover.
struct StaleTemp
{
  std::string name;
  bool removed = false;
  std::string why; // why it was kept
};

// Removes dirfd/name if it is provably the temp file of a vmcsum that died: a regular file,
// no flock held on it (a running vmcsum holds one), and the marker naming this very name
// (trusted.*, or user.* on a file owned by the unprivileged user running this). Anything else
// is kept and said why: an image that merely looks like a temp file is never deleted. The
// name is re-checked (same device and inode) right before unlinkat. nullopt when the name is
// gone or not a regular file (nothing to report). With dry_run nothing is removed.
std::optional<StaleTemp> remove_stale_temp(int dirfd, const std::string& name, bool dry_run);
// remove_stale_temp() for every entry of dirfd whose name `match`es, in name order.
std::vector<StaleTemp>
remove_stale_temps(int dirfd, const std::function<bool(const std::string&)>& match, bool dry_run);

} // namespace vmcsum::sys
