// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/btrfs/inode_item.hpp>
#include <vmcsum/btrfs/profile.hpp>
#include <vmcsum/btrfs/subvolume.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/path.hpp>
#include <vmcsum/sys/walk.hpp>

#include <cerrno>
#include <climits>
#include <cstdlib>

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace vmcsum::core {

std::string kind_of_mode(uint32_t mode)
{
  switch (mode & S_IFMT) {
  case S_IFREG:
    return "file";
  case S_IFDIR:
    return "directory";
  case S_IFLNK:
    return "symlink";
  case S_IFIFO:
    return "fifo";
  case S_IFSOCK:
    return "socket";
  case S_IFCHR:
    return "char-device";
  case S_IFBLK:
    return "block-device";
  default:
    return "unknown";
  }
}

void ExtentCounter::add(const btrfs::Extent& e)
{
  // filefrag(8) counts an extent only where the physical layout breaks, so two FIEMAP
  // records that continue each other on disk are one extent; do the same so the numbers agree.
  bool contiguous = !m_first && e.physical == m_expected_physical &&
                    !(e.flags & (FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_ENCODED));
  if (!contiguous) {
    ++m_sum.extents;
  }
  m_first = false;
  m_expected_physical = e.physical + e.length;
  m_sum.mapped_bytes += e.length;
  if (e.flags & FIEMAP_EXTENT_SHARED) {
    m_sum.shared_bytes += e.length;
  }
  if (e.flags & FIEMAP_EXTENT_ENCODED) {
    m_sum.compressed_bytes += e.length;
  }
  if (e.flags & FIEMAP_EXTENT_UNWRITTEN) {
    m_sum.unwritten_bytes += e.length;
  }
  if (e.flags & FIEMAP_EXTENT_DATA_INLINE) {
    m_sum.inline_bytes += e.length;
  }
}

void FsSyncs::once(const std::string& fsid, int fd, const std::string& path)
{
  std::shared_ptr<Fs> fs;
  {
    std::lock_guard lock(m_mu);
    auto& slot = m_fs[fsid];
    if (!slot) {
      slot = std::make_shared<Fs>();
    }
    fs = slot;
  }
  std::lock_guard lock(fs->mu);
  if (!fs->done) {
    btrfs::sync_fs(fd, path); // throws: not done, the next file tries again
    fs->done = true;
  }
}

FactCollector::FactCollector(const std::string& mountinfo, std::shared_ptr<FsSyncs> syncs)
  : m_mounts(mountinfo)
  , m_syncs(syncs ? std::move(syncs) : std::make_shared<FsSyncs>())
{
}

FsFacts& FactCollector::fs_facts(int fd, const std::string& path)
{
  struct statfs sfs = {};
  if (::fstatfs(fd, &sfs) < 0) {
    throw_errno("statfs", path);
  }
  if (sfs.f_type != BTRFS_SUPER_MAGIC) {
    throw Error(Errc::not_btrfs, "not on a btrfs filesystem", path);
  }
  btrfs::FsInfo info = btrfs::fs_info(fd, path);
  auto& slot = m_fs[info.fsid];
  if (!slot) {
    slot = std::make_unique<FsFacts>();
    slot->info = info;
    try {
      slot->data_profiles = btrfs::data_profiles(btrfs::space_info(fd, path));
    } catch (const Error& e) {
      slot->data_profiles_unknown = e.detail();
    }
  }
  return *slot;
}

namespace {

// "needs CAP_SYS_ADMIN" is what a sysadmin can act on; the raw errno follows.
std::string privilege_reason(const Error& e, const char* cap)
{
  if (e.code() == Errc::permission) {
    return std::string("needs ") + cap + " (" + e.detail() + ")";
  }
  return e.detail();
}

std::optional<std::string> get_xattr(int fd, const char* name)
{
  char buf[256];
  ssize_t n = ::fgetxattr(fd, name, buf, sizeof buf);
  if (n < 0) {
    return std::nullopt;
  }
  return std::string(buf, static_cast<size_t>(n));
}

void fill_compression(FileFacts& f, int fd, const sys::MountEntry* mount)
{
  // Order of precedence in the kernel (btrfs_compress_heuristic / inode_need_compress): the
  // property or attribute on the inode first, then the mount option.
  // The property is read only when the attributes show it can be set: applying it sets
  // FS_COMPR_FL (an algorithm) or FS_NOCOMP_FL ("no", "none") (fs/btrfs/props.c,
  // prop_compression_apply), and clearing both attributes removes it (fs/btrfs/ioctl.c,
  // btrfs_fileattr_set; fstests btrfs/059). Neither shown: no property the kernel acts on, and
  // one fgetxattr per image fewer on audit's walk.
  const bool may_have_property =
    !f.attr_flags || (*f.attr_flags & (FS_NOCOMP_FL | FS_COMPR_FL)) != 0;
  if (auto prop = may_have_property ? get_xattr(fd, "btrfs.compression") : std::nullopt;
      prop && !prop->empty()) {
    f.compression = (*prop == "no") ? "none" : *prop;
    f.compression_source = "property";
    return;
  }
  if (f.attr_flags && (*f.attr_flags & FS_NOCOMP_FL)) {
    f.compression = "none";
    f.compression_source = "attribute";
    return;
  }
  if (f.attr_flags && (*f.attr_flags & FS_COMPR_FL)) {
    // Without a property the algorithm is the mount's, or zlib by default.
    std::string alg = "zlib";
    if (mount) {
      for (const char* opt : {"compress-force", "compress"}) {
        if (auto v = mount->option(opt); v && !v->empty()) {
          alg = v->substr(0, v->find(':'));
        }
      }
    }
    f.compression = alg;
    f.compression_source = "attribute";
    return;
  }
  if (mount) {
    for (const char* opt : {"compress-force", "compress"}) {
      if (auto v = mount->option(opt)) {
        std::string alg = v->empty() ? "zlib" : v->substr(0, v->find(':'));
        if (alg == "no") {
          alg = "none";
        }
        f.compression = alg;
        f.compression_source = "mount";
        return;
      }
    }
  }
  f.compression = "none";
}

// What a path is that could not be looked up: "missing" only when nothing is there (a
// directory on the way without search permission hides what is: "unknown", the error says why).
std::string kind_of_lookup_error(int err)
{
  return err == ENOENT || err == ENOTDIR ? "missing" : "unknown";
}

void fill_stat(FileFacts& f, const struct stat& st)
{
  f.dev = st.st_dev;
  f.inode = st.st_ino;
  f.nlink = st.st_nlink;
  f.uid = st.st_uid;
  f.gid = st.st_gid;
  f.mode = st.st_mode;
  f.size = static_cast<uint64_t>(st.st_size);
  f.allocated = static_cast<uint64_t>(st.st_blocks) * 512;
}

void fill_mount(FileFacts& f, const std::optional<sys::MountEntry>& mount)
{
  if (mount) {
    f.fs = mount->fstype;
    f.mount_point = mount->target;
    f.mount_options = mount->options;
  }
}

// Opens the file that was stat'ed as `st`; on failure `why` says why its own facts are unknown.
// False when the path now names another file.
// The filesystem-wide facts: fsid, checksum type, sector size, data profiles.
void fill_fs(FileFacts& f, const FsFacts& fsf)
{
  f.on_btrfs = true;
  f.fsid = fsf.info.fsid;
  if (fsf.info.csum_info_valid) {
    f.csum_type = btrfs::csum_type_name(fsf.info.csum_type);
  } else {
    f.unknown["csum_type"] = "kernel does not report it (BTRFS_IOC_FS_INFO without CSUM_INFO)";
  }
  f.sector_size = fsf.info.sectorsize;
  if (fsf.data_profiles_unknown) {
    f.unknown["data_profile"] = *fsf.data_profiles_unknown;
  } else {
    f.data_profiles = fsf.data_profiles;
  }
}

// The subvolume's path, looked up once per subvolume (INO_LOOKUP needs CAP_SYS_ADMIN).
void fill_subvolume_path(FileFacts& f, FsFacts& fsf, int fs_fd, const std::string& path)
{
  auto cached = fsf.subvolume_paths.find(*f.subvolume_id);
  if (cached == fsf.subvolume_paths.end()) {
    std::pair<std::optional<std::string>, std::string> answer;
    try {
      answer.first = btrfs::subvolume_path(fs_fd, *f.subvolume_id, path);
    } catch (const Error& e) {
      answer.second = privilege_reason(e, "CAP_SYS_ADMIN");
    }
    cached = fsf.subvolume_paths.emplace(*f.subvolume_id, std::move(answer)).first;
  }
  if (cached->second.first) {
    f.subvolume_path = cached->second.first;
  } else {
    f.unknown["subvolume_path"] = cached->second.second;
  }
}

void fill_nocow(FileFacts& f, int fd, const std::string& path, const std::string& why)
{
  if (fd < 0) {
    f.unknown["nocow"] = why;
    return;
  }
  try {
    f.attr_flags = btrfs::get_attr_flags(fd, path);
    f.nocow = (*f.attr_flags & FS_NOCOW_FL) != 0;
  } catch (const Error& e) {
    f.unknown["nocow"] = e.detail();
  }
}

// NODATASUM lives only in the inode item; GETFLAGS never shows it (docs/kernel-facts.md §3.1).
void fill_nodatasum(FileFacts& f, FsFacts& fsf, FsSyncs& syncs, int fs_fd, const std::string& path)
{
  if (!f.subvolume_id) {
    f.unknown["nodatasum"] = "subvolume unknown";
    return;
  }
  try {
    if (!fsf.synced) {
      syncs.once(fsf.info.fsid, fs_fd, path);
      fsf.synced = true;
    }
    auto item = btrfs::read_inode_item(fs_fd, *f.subvolume_id, f.inode, path);
    if (item) {
      f.inode_flags = item->flags;
      f.nodatasum = (item->flags & btrfs::inode_flag::nodatasum) != 0;
    } else {
      f.unknown["nodatasum"] = "inode item not found in subvolume tree";
    }
  } catch (const Error& e) {
    f.unknown["nodatasum"] = privilege_reason(e, "CAP_SYS_ADMIN");
  }
}

void fill_extents(FileFacts& f, int fd, const std::string& path, const std::string& why)
{
  if (fd < 0) {
    for (const char* k : {"extents", "shared_bytes", "compressed_bytes", "unwritten_bytes"}) {
      f.unknown[k] = why;
    }
    return;
  }
  try {
    ExtentCounter counter;
    btrfs::for_each_extent(fd, path, true, [&](const btrfs::Extent& e) { counter.add(e); });
    const auto& s = counter.summary();
    f.extents = s.extents;
    f.shared_bytes = s.shared_bytes;
    f.compressed_bytes = s.compressed_bytes;
    f.unwritten_bytes = s.unwritten_bytes;
    f.inline_bytes = s.inline_bytes;
  } catch (const Error& e) {
    for (const char* k : {"extents", "shared_bytes", "compressed_bytes", "unwritten_bytes"}) {
      f.unknown[k] = e.detail();
    }
  }
}

} // namespace

bool FactCollector::fill_examined(FileFacts& f, const struct stat& st,
                                  std::optional<sys::MountEntry>& mount)
{
  fill_stat(f, st);
  mount = m_mounts.find(f.canonical_path);
  fill_mount(f, mount);
  f.examined = true;
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    // Never opened (a FIFO would block, a device node is no image): its btrfs facts stay
    // unknown, but where it lies is known from the mount table.
    f.on_btrfs = f.fs == "btrfs";
    f.notes.push_back("not a regular file or directory: only stat facts are shown");
    return false;
  }
  return true;
}

FileFacts FactCollector::collect_fd(int fd, const std::string& display_path, int dir_fd,
                                    const KnownOfFd& known)
{
  FileFacts f;
  f.path = display_path;
  struct stat st = {};
  if (known.st) {
    st = *known.st;
  } else if (::fstat(fd, &st) < 0) {
    f.error = "cannot examine: " + errno_text(errno);
    return f;
  }
  f.kind = kind_of_mode(st.st_mode);
  // The kernel's name of what is open: for the mount table and messages, never opened by name.
  f.canonical_path = known.path_canonical ? display_path : sys::path_of_fd(fd, display_path);
  std::optional<sys::MountEntry> mount;
  if (!fill_examined(f, st, mount)) {
    return f;
  }
  // The ioctls below need a descriptor open for reading (O_PATH will not do): `fd` itself when
  // it is one, else one reopened through the descriptor (a magic link to this very inode, not
  // a name).
  int readable = -1;
  sys::Fd own;
  const int fl = known.readable ? O_RDONLY : ::fcntl(fd, F_GETFL);
  if (fl >= 0 && !(fl & O_PATH) && (fl & O_ACCMODE) != O_WRONLY) {
    readable = fd;
  } else {
    own = sys::reopen_fd(fd, O_RDONLY | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
    readable = own ? own.get() : -1;
  }
  std::string why;
  if (readable < 0) {
    f.open_error = errno_text(errno);
    why = "cannot open: " + *f.open_error;
  }
  // A directory of another st_dev would answer for another subvolume: not used.
  struct stat dst = {};
  if (readable < 0 && dir_fd >= 0 && (::fstat(dir_fd, &dst) < 0 || dst.st_dev != st.st_dev)) {
    dir_fd = -1;
  }
  return fill_from_fd(f, st, mount, readable, readable >= 0 ? readable : dir_fd, why, display_path);
}

FileFacts FactCollector::collect_named(const std::string& path, bool follow_symlink)
{
  FileFacts f;
  f.path = path;
  // Looked up once, one component at a time (another user's symlink is not followed).
  sys::NamedPath named = sys::open_named(path, follow_symlink);
  if (!named.fd) {
    f.symlink_target = named.last_link;
    if (named.dangling) {
      f.kind = "symlink";
      f.error = "dangling symlink: " + errno_text(named.error);
    } else {
      f.kind = named.error == EPERM && named.last_link ? "symlink"
               : named.error == EPERM                  ? "unknown"
                                                       : kind_of_lookup_error(named.error);
      f.error = named.why;
      f.symlink_refused = named.error == EPERM;
    }
    return f;
  }
  const sys::Fd& fd = named.fd;
  struct stat lst = {};
  if (::fstat(fd.get(), &lst) < 0) {
    f.error = errno_text(errno);
    f.kind = "unknown";
    return f;
  }
  if (S_ISLNK(lst.st_mode)) { // not followed (follow_symlink false)
    char buf[PATH_MAX];
    const ssize_t n = ::readlinkat(fd.get(), "", buf, sizeof buf - 1);
    if (n >= 0) {
      f.symlink_target = std::string(buf, static_cast<size_t>(n));
    }
    f.kind = "symlink";
    f.examined = true;
    f.notes.push_back("symlink, not followed");
    return f;
  }
  // The directory answers the filesystem questions when the file cannot be read (not root);
  // collect_fd uses it only if it is on the file's st_dev. Reopened by the kernel's name of
  // what was found, with no symlink followed: never a directory elsewhere.
  sys::Fd dir(
    sys::open_canonical_dir(sys::parent_dir(sys::path_of_fd(fd.get(), "")), O_RDONLY | O_NONBLOCK));
  FileFacts out = collect_fd(fd.get(), path, dir.get());
  if (named.last_link) {
    out.symlink_target = named.last_link;
    out.notes.insert(out.notes.begin(), "symlink followed to its target");
  }
  return out;
}

FileFacts& FactCollector::fill_from_fd(FileFacts& f, const struct stat& st,
                                       const std::optional<sys::MountEntry>& mount, int fd,
                                       int fs_fd, const std::string& why, const std::string& path)
{
  const std::string& file_unknown_reason = why;
  if (fs_fd < 0) {
    f.error = file_unknown_reason;
    f.examined = false;
    return f;
  }

  const DevFacts& devf = dev_facts(st.st_dev, fs_fd, path);
  if (devf.fs_error) {
    if (devf.fs_error->code() == Errc::not_btrfs) {
      f.notes.push_back("not on btrfs" + (f.fs.empty() ? std::string() : " (" + f.fs + ")") +
                        ": btrfs facts do not apply");
    } else {
      f.unknown["fs"] = devf.fs_error->detail();
    }
    return f;
  }
  FsFacts& fsf = *devf.fs;
  fill_fs(f, fsf);
  f.subvolume_id = devf.subvolume_id;
  if (!f.subvolume_id) {
    f.unknown["subvolume_id"] = devf.subvolume_error;
  } else {
    fill_subvolume_path(f, fsf, fs_fd, path);
  }
  fill_nocow(f, fd, path, file_unknown_reason);
  fill_nodatasum(f, fsf, *m_syncs, fs_fd, path);
  if (fd >= 0) {
    fill_compression(f, fd, mount ? &*mount : nullptr);
  } else {
    f.unknown["compression"] = file_unknown_reason;
  }
  if (S_ISREG(st.st_mode)) {
    fill_extents(f, fd, path, file_unknown_reason);
  }
  return f;
}

const FactCollector::DevFacts& FactCollector::dev_facts(uint64_t dev, int fs_fd,
                                                        const std::string& path)
{
  auto [dev_it, first_time] = m_dev.try_emplace(dev);
  DevFacts& devf = dev_it->second;
  if (first_time) {
    try {
      devf.fs = &fs_facts(fs_fd, path);
      devf.subvolume_id = btrfs::subvolume_id(fs_fd, path);
    } catch (const Error& e) {
      if (!devf.fs) {
        devf.fs_error = e;
      } else {
        devf.subvolume_error = e.detail();
      }
    }
  }
  return devf;
}

} // namespace vmcsum::core
