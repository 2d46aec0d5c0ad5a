// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Helpers of `vmcsum set` shared by the engine and the rewrite: paths for messages, reading
// data ranges and xattrs, the page-cache check, and the flag read-back.
#include "set_impl.hpp"

#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/temp_file.hpp>

#include <cerrno>

#include <linux/fs.h>
#include <sys/mman.h>
#include <sys/xattr.h>

namespace vmcsum::core::set_impl {

double seconds_since(Clock::time_point t)
{
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string dir_of(const std::string& path)
{
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path)
{
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string join(const std::string& dir, const std::string& name)
{
  return dir == "/" ? "/" + name : dir + "/" + name;
}

void pwrite_all(int fd, const uint8_t* buf, size_t len, uint64_t off, const std::string& path)
{
  if (int err = sys::pwrite_full(fd, buf, len, off)) {
    stop_on_errno(err, "io-error", "write to " + path);
  }
}

// Pages of the file that are in the page cache (mincore over a read-only mapping), counted over
// its data ranges only (SEEK_DATA/SEEK_HOLE): the copy was written range by range and never read,
// so its holes hold no pages, and a 16 TiB sparse image must not cost a walk over 16 TiB of page
// tables. `check` runs between steps (cancellation, the lease).
std::optional<uint64_t> resident_pages(int fd, uint64_t size, const std::function<void()>& check)
{
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  constexpr uint64_t step = 1ULL << 30;
  uint64_t count = 0;
  std::vector<unsigned char> vec;
  for (uint64_t pos = 0; pos < size;) {
    const off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {
        break; // no data after pos
      }
      return std::nullopt;
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      return std::nullopt;
    }
    const uint64_t start = static_cast<uint64_t>(data) / page * page;
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    for (uint64_t off = start; off < end; off += step) {
      check();
      const uint64_t len = std::min(step, end - off);
      void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(off));
      if (m == MAP_FAILED) {
        return std::nullopt;
      }
      vec.assign((len + page - 1) / page, 0);
      int rc = ::mincore(m, len, vec.data());
      ::munmap(m, len);
      if (rc < 0) {
        return std::nullopt;
      }
      for (unsigned char v : vec) {
        count += v & 1;
      }
    }
    pos = std::max<uint64_t>(end, static_cast<uint64_t>(data) + 1);
  }
  return count;
}

// Every extended attribute of fd (names and values), retried when they change meanwhile.
Xattrs read_xattrs(int fd, const std::string& path)
{
  for (int attempt = 0; attempt < 5; ++attempt) {
    ssize_t n = ::flistxattr(fd, nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP) {
        return {};
      }
      stop_on_errno(errno, "xattr", "listxattr " + path);
    }
    std::string names(static_cast<size_t>(n), '\0');
    n = ::flistxattr(fd, names.data(), names.size());
    if (n < 0) {
      if (errno == ERANGE) {
        continue;
      }
      stop_on_errno(errno, "xattr", "listxattr " + path);
    }
    names.resize(static_cast<size_t>(n));
    Xattrs out;
    bool retry = false;
    for (size_t pos = 0; pos < names.size() && !retry;) {
      std::string name(names.c_str() + pos);
      pos += name.size() + 1;
      if (name.empty() || sys::is_temp_marker_xattr(name)) {
        continue; // a marker is about one temp file; never carried to another
      }
      ssize_t v = ::fgetxattr(fd, name.c_str(), nullptr, 0);
      if (v < 0) {
        if (errno == ENODATA) {
          continue;
        }
        stop_on_errno(errno, "xattr", "getxattr " + name + " of " + path);
      }
      std::string value(static_cast<size_t>(v), '\0');
      v = ::fgetxattr(fd, name.c_str(), value.data(), value.size());
      if (v < 0) {
        if (errno == ERANGE) {
          retry = true;
          break;
        }
        if (errno == ENODATA) {
          continue;
        }
        stop_on_errno(errno, "xattr", "getxattr " + name + " of " + path);
      }
      value.resize(static_cast<size_t>(v));
      out.emplace_back(std::move(name), std::move(value));
    }
    if (!retry) {
      return out;
    }
  }
  stop_failed("xattr", "the extended attributes of " + path + " keep changing");
}

Outcome outcome_of(SetAction a)
{
  switch (a) {
  case SetAction::flag_set:
    return Outcome::flag_set;
  case SetAction::rewrite:
    return Outcome::rewritten;
  case SetAction::unchanged:
    return Outcome::unchanged;
  case SetAction::refused:
    return Outcome::refused;
  case SetAction::skipped:
    return Outcome::skipped;
  }
  return Outcome::refused;
}

SetState state_of(const FileFacts& f)
{
  SetState s;
  s.nocow = f.nocow;
  s.nodatasum = f.nodatasum;
  s.inode_flags = f.inode_flags;
  if (f.kind == "directory") {
    s.state = f.nocow ? (*f.nocow ? "nocow" : "cow") : "unknown";
  } else {
    s.state = f.inode_flags ? cow_state_name(*f.inode_flags) : "unknown";
  }
  s.size = f.size;
  s.allocated = f.allocated;
  s.extents = f.extents;
  s.compression = f.compression.value_or("");
  s.inode = f.inode;
  return s;
}

SetFacts set_facts_of(const FileFacts& f, bool in_walk)
{
  SetFacts s;
  s.kind = f.kind.empty() ? "missing" : f.kind;
  s.in_walk = in_walk;
  if (!f.examined) {
    s.error = f.error.value_or("cannot examine");
    s.symlink_refused = f.symlink_refused;
  }
  s.on_btrfs = f.on_btrfs;
  s.fs = f.fs;
  s.nocow = f.nocow;
  s.inode_flags = f.inode_flags;
  for (const char* key : {"nodatasum", "nocow", "fs"}) {
    if (auto it = f.unknown.find(key); it != f.unknown.end()) {
      s.inode_flags_unknown = it->second;
      break;
    }
  }
  s.attr_flags = f.attr_flags.value_or(0);
  s.size = f.size;
  s.allocated = f.allocated;
  s.nlink = f.nlink;
  s.compression = f.compression.value_or("none");
  s.compression_source = f.compression_source.value_or("");
  s.compressed_bytes = f.compressed_bytes.value_or(0);
  return s;
}

// True when fd shows the target both through FS_IOC_GETFLAGS and in its inode item, read after
// a commit (TREE_SEARCH sees delayed inode updates only then, docs/kernel-facts.md §3.3); `detail`
// says what was found. A directory's inode item has NODATACOW only.
bool flags_match(int fd, uint64_t subvol, uint64_t ino, bool is_dir, CowTarget target,
                 const std::string& path, std::string& detail)
{
  const bool want_nocow = target == CowTarget::nocow;
  uint32_t attr = btrfs::get_attr_flags(fd, path);
  bool ok = ((attr & FS_NOCOW_FL) != 0) == want_nocow;
  detail = std::string("FS_IOC_GETFLAGS ") + ((attr & FS_NOCOW_FL) ? "has" : "lacks") + " NOCOW";
  btrfs::sync_fs(fd, path);
  std::optional<btrfs::InodeItem> item;
  try {
    item = btrfs::read_inode_item(fd, subvol, ino, path);
  } catch (const Error& e) {
    // GETFLAGS shows NOCOW exactly when NODATACOW is set, and a directory has nothing else to
    // check; a file's NODATASUM can only be read from the inode item.
    if (is_dir && e.code() == Errc::permission) {
      detail += " (inode item not read: needs CAP_SYS_ADMIN)";
      return ok;
    }
    throw;
  }
  if (!item) {
    detail += ", inode item not found after a commit";
    return false;
  }
  detail += ", inode flags " + cow_state_name(item->flags);
  if (is_dir) {
    return ok && ((item->flags & btrfs::inode_flag::nodatacow) != 0) == want_nocow;
  }
  return ok && in_target_state(item->flags, target);
}

} // namespace vmcsum::core::set_impl
