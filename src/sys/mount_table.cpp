// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/sys/mount_table.hpp>

#include <libmount/libmount.h>

namespace vmcsum::sys {

namespace {
struct TableDeleter
{
  void operator()(libmnt_table* tb) const { mnt_unref_table(tb); }
};
struct IterDeleter
{
  void operator()(libmnt_iter* it) const { mnt_free_iter(it); }
};

std::string str(const char* s)
{
  return s ? s : "";
}

MountEntry to_entry(libmnt_fs* fs)
{
  MountEntry e;
  e.target = str(mnt_fs_get_target(fs));
  e.source = str(mnt_fs_get_source(fs));
  e.fstype = str(mnt_fs_get_fstype(fs));
  e.root = str(mnt_fs_get_root(fs));
  e.options = str(mnt_fs_get_options(fs));
  return e;
}
} // namespace

std::optional<std::string> MountEntry::option(const std::string& name) const
{
  char* value = nullptr;
  size_t size = 0;
  int rc = mnt_optstr_get_option(options.c_str(), name.c_str(), &value, &size);
  if (rc != 0) {
    return std::nullopt;
  }
  return value ? std::string(value, size) : std::string();
}

struct MountTable::Impl
{
  std::unique_ptr<libmnt_table, TableDeleter> table;
};

MountTable::MountTable(const std::string& mountinfo)
  : m_impl(std::make_unique<Impl>())
{
  m_impl->table.reset(mnt_new_table());
  if (!m_impl->table) {
    throw Error(Errc::internal, "mnt_new_table failed");
  }
  // libmount returns a negative errno.
  int rc = mnt_table_parse_file(m_impl->table.get(), mountinfo.c_str());
  if (rc != 0) {
    throw_errno(rc < 0 ? -rc : EINVAL, "parse mount table", mountinfo);
  }
}

MountTable::~MountTable() = default;
MountTable::MountTable(MountTable&&) noexcept = default;
MountTable& MountTable::operator=(MountTable&&) noexcept = default;

std::optional<MountEntry> MountTable::find(const std::string& canonical_path) const
{
  // libmount's mnt_table_find_mountpoint() stat()s the path, which a fixture table or a
  // vanished file cannot satisfy; a longest-prefix match on the mount points is enough here.
  auto covers = [&](const std::string& target) {
    if (target == "/") {
      return true;
    }
    return canonical_path.compare(0, target.size(), target) == 0 &&
           (canonical_path.size() == target.size() || canonical_path[target.size()] == '/');
  };
  std::unique_ptr<libmnt_iter, IterDeleter> it(mnt_new_iter(MNT_ITER_BACKWARD));
  libmnt_fs* fs = nullptr;
  libmnt_fs* best = nullptr;
  size_t best_len = 0;
  while (mnt_table_next_fs(m_impl->table.get(), it.get(), &fs) == 0) {
    std::string target = str(mnt_fs_get_target(fs));
    // Walking backwards, the first of equal length is the one mounted last, the visible one.
    if (covers(target) && (!best || target.size() > best_len)) {
      best = fs;
      best_len = target.size();
    }
  }
  if (!best) {
    return std::nullopt;
  }
  return to_entry(best);
}

std::vector<MountEntry> MountTable::of_type(const std::string& fstype) const
{
  std::vector<MountEntry> out;
  std::unique_ptr<libmnt_iter, IterDeleter> it(mnt_new_iter(MNT_ITER_FORWARD));
  libmnt_fs* fs = nullptr;
  while (mnt_table_next_fs(m_impl->table.get(), it.get(), &fs) == 0) {
    if (str(mnt_fs_get_fstype(fs)) == fstype) {
      out.push_back(to_entry(fs));
    }
  }
  return out;
}

} // namespace vmcsum::sys
