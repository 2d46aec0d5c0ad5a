// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The verified rewrite of `vmcsum set`: a copy in a new inode that got the requested flags
// while empty, read back from disk, swapped in atomically. The original stays untouched until a
// verified copy replaces it in one renameat2(): a crash at any point leaves the original or the
// finished copy, plus at most one temp file that the next run can prove is its own
// (sys::TempFile) and removes. Every open is relative to the directory fd the engine opened
// once; the inode acted on is the one examined (device, inode, size, mtime, ctime re-checked).
#include "set_impl.hpp"

#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/host/proc_scan.hpp>
#include <vmcsum/report/text.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/lease.hpp>
#include <vmcsum/sys/temp_file.hpp>

#include <cerrno>
#include <memory>
#include <span>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace vmcsum::core::set_impl {

namespace {

using sys::Lease;

bool same_times(const struct timespec& a, const struct timespec& b)
{
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// One rewrite, step by step. The members own what a failed step must undo, declared so that
// they go in the right order: the temp file's name is removed, then the lease released, then
// the descriptors closed.
class Rewrite
{
public:
  Rewrite(const SetTarget& t, sys::Fd source, SetEntry& e, const SetOptions& opts,
          const std::function<void(const SetProgress&)>& progress, const std::atomic<bool>& cancel)
    : m_ff(*t.facts)
    , m_e(e)
    , m_progress(progress)
    , m_check(cancel, "interrupted: the temp file was removed, " + t.path + " is untouched",
              "another process opened " + t.path +
                " during the rewrite: abandoned (temp file removed, original untouched)")
    , m_target(opts.target)
    , m_proc_dir(opts.proc_dir)
    , m_path(t.path)
    , m_dir(t.dir)
    , m_name(t.name)
    , m_dirfd(t.dirfd)
    , m_src(std::move(source))
  {
  }

  void run()
  {
    if (!m_ff.subvolume_id) {
      stop_refused("needs-root", "subvolume of " + m_path + " unknown");
    }
    check_source();
    take_lease();
    create_temp();
    set_flags_while_empty();
    copy_data();
    flush_copy();
    verify_copy();
    copy_metadata();
    check_unchanged();
    swap_in();
  }

private:
  void check_source();
  void take_lease();
  void create_temp();
  void set_flags_while_empty();
  void set_temp_flags(bool carry_compression);
  void copy_data();
  [[noreturn]] void refuse_unreadable();
  void flush_copy();
  void verify_copy();
  int open_read_back(sys::Fd& direct, SetVerify& v);
  std::string hash_read_back(int vfd);
  void copy_metadata();
  void check_unchanged();
  void swap_in();
  bool exchange();

  void check() const { m_check(); }
  void report(const char* phase, uint64_t done, uint64_t total) const
  {
    if (m_progress) {
      m_progress({m_path, phase, done, total});
    }
  }
  bool nocow() const { return m_target == CowTarget::nocow; }

  const FileFacts& m_ff;
  SetEntry& m_e;
  const std::function<void(const SetProgress&)>& m_progress;
  CancelCheck m_check;
  const CowTarget m_target;
  const std::string m_proc_dir;
  const std::string m_path, m_dir, m_name;
  const int m_dirfd; // owned by the engine, open for the whole rewrite
  sys::Fd m_src;
  std::string m_tpath;
  struct stat m_st
  {
  };
  struct stat m_tst
  {
  };
  uint64_t m_size = 0;  // of the source
  uint64_t m_total = 0; // bytes in its data ranges
  Xattrs m_xattrs;
  uint32_t m_src_attr = 0;
  std::string m_source_digest;
  std::unique_ptr<Lease> m_lease;
  std::unique_ptr<sys::TempFile> m_temp;
};

// The source the engine opened once, relative to its directory (O_NONBLOCK: an existing lease
// made that open fail with EWOULDBLOCK rather than wait): still the inode that was examined.
void Rewrite::check_source()
{
  if (::fstat(m_src.get(), &m_st) < 0) {
    stop_on_errno(errno, "cannot-read", "fstat " + m_path);
  }
  if (!S_ISREG(m_st.st_mode) || m_st.st_ino != m_ff.inode ||
      (m_ff.dev != 0 && m_st.st_dev != m_ff.dev)) {
    stop_failed("changed", m_path + " was replaced while vmcsum looked at it");
  }
  if (m_st.st_nlink > 1) {
    stop_refused("hard-links", m_path + " has " + std::to_string(m_st.st_nlink) +
                                 " hard links (it got one meanwhile)");
  }
  m_size = static_cast<uint64_t>(m_st.st_size);
}

void Rewrite::take_lease()
{
  // No other open of the file may exist from here on; the lease needs this to be the only
  // descriptor vmcsum has on it, too (check_conflicting_open() counts every reader).
  m_lease = std::make_unique<Lease>(m_src.get());
  m_check.watch(m_lease.get());
  if (!m_lease->active()) {
    if (m_lease->error() == EAGAIN || m_lease->error() == EBUSY) {
      stop_refused("in-use",
                   m_path + " is open by another process (the kernel refused a write lease; /proc "
                            "did not show which process, so it may be in another PID namespace)");
    }
    m_e.notes.push_back("no write lease (" + errno_text(m_lease->error()) +
                        "): opens during the copy are not noticed; /proc is checked again "
                        "before the swap");
  }
  m_xattrs = read_xattrs(m_src.get(), m_path);
  m_src_attr = btrfs::get_attr_flags(m_src.get(), m_path);
}

// The temp file is created anonymous, locked and marked before its name exists (TempFile), so
// a later run can prove a leftover is ours before it removes it.
void Rewrite::create_temp()
{
  try {
    m_temp = std::make_unique<sys::TempFile>(m_dirfd, m_name, m_dir);
  } catch (const Error& err) {
    throw stop_from_error(err, "io-error");
  }
  m_tpath = m_temp->display_path();
  if (::fstat(m_temp->fd(), &m_tst) < 0) {
    stop_on_errno(errno, "io-error", "fstat " + m_tpath);
  }
}

// btrfs_fileattr_set() changes NODATACOW/NODATASUM only while i_size == 0.
void Rewrite::set_flags_while_empty()
{
  const auto src_prop = std::find_if(m_xattrs.begin(), m_xattrs.end(),
                                     [](const auto& x) { return x.first == k_compression_xattr; });
  try {
    set_temp_flags(src_prop != m_xattrs.end());
  } catch (const Error& err) {
    throw stop_from_error(err, "flags-not-set");
  }
  if (nocow() && src_prop != m_xattrs.end()) {
    m_e.xattrs_dropped.push_back(k_compression_xattr);
    m_e.notes.push_back("btrfs.compression=" + src_prop->second +
                        " not carried over: NOCOW files cannot be compressed");
  }
  std::string detail;
  if (!flags_match(m_temp->fd(), *m_ff.subvolume_id, m_tst.st_ino, false, m_target, m_tpath,
                   detail)) {
    stop_failed("flags-not-set",
                "the kernel did not give the empty temp file the requested state (" + detail + ")");
  }
}

// Throws Error from the ioctls, WriteStop from the xattr calls.
void Rewrite::set_temp_flags(bool carry_compression)
{
  const int tmp = m_temp->fd();
  const uint32_t compr_bits = FS_COMPR_FL | FS_NOCOMP_FL;
  // A compression property inherited from the directory goes first: btrfs refuses NOCOW
  // together with compression (check_fsflags(): -EINVAL). Removing it is allowed on any
  // inode (an empty value skips the validation).
  if (::fremovexattr(tmp, k_compression_xattr) < 0 && errno != ENODATA && errno != ENOTSUP) {
    stop_on_errno(errno, "flags-not-set", "remove btrfs.compression from " + m_tpath);
  }
  uint32_t cur = btrfs::get_attr_flags(tmp, m_tpath);
  if (nocow()) {
    if (cur & compr_bits) {
      cur &= ~compr_bits;
      btrfs::set_attr_flags(tmp, cur, m_tpath);
    }
    btrfs::set_attr_flags(tmp, cur | FS_NOCOW_FL, m_tpath);
    return;
  }
  // Always called: this also drops a NODATASUM inherited from a NOCOW directory or from
  // `-o nodatasum` (kernels up to 7.2; later ones are caught by the check after it).
  cur &= ~uint32_t(FS_NOCOW_FL);
  btrfs::set_attr_flags(tmp, cur, m_tpath);
  // The source's compression setting, before any data, so the copy is compressed alike.
  if (carry_compression) {
    const auto& value = std::find_if(m_xattrs.begin(), m_xattrs.end(), [](const auto& x) {
                          return x.first == k_compression_xattr;
                        })->second;
    if (::fsetxattr(tmp, k_compression_xattr, value.data(), value.size(), 0) < 0) {
      stop_on_errno(errno, "xattr", "set btrfs.compression on " + m_tpath);
    }
    m_e.xattrs_copied.push_back(k_compression_xattr);
  }
  cur = btrfs::get_attr_flags(tmp, m_tpath);
  uint32_t want = (cur & ~compr_bits) | (m_src_attr & compr_bits);
  if (want != cur) {
    btrfs::set_attr_flags(tmp, want, m_tpath);
  }
}

// Only the data ranges (SEEK_DATA/SEEK_HOLE), with read/write: never a reflink
// (copy_file_range may clone on btrfs), and holes stay holes. The one chunked reader
// (sys::ChunkReader) retries a chunk that fails with EIO sector by sector: if any sector stays
// unreadable the copy is abandoned, never finished with holes or zeros where data was.
void Rewrite::copy_data()
{
  // Plain buffered writes, flushed once at the end, as cp + sync do: starting writeback early
  // (sync_file_range every 64 MiB) made the copy phase 1.3-1.6x slower on the disks measured,
  // because reads of the source then compete with writes of the copy (bench/set_convert.sh).
  auto t_copy = Clock::now();
  const int src = m_src.get();
  ::posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
  Hasher hash;
  sys::ReadOutcome got;
  try {
    const auto ranges = sys::data_ranges(src, m_size, m_path);
    for (const auto& r : ranges) {
      m_total += r.length;
    }
    m_e.data_ranges = ranges.size();
    sys::ChunkReader reader({k_chunk, m_ff.sector_size.value_or(4096), false, k_max_listed_ranges});
    got = reader.read_ranges(
      src, ranges, m_path,
      [&](uint64_t off, std::span<const uint8_t> bytes) {
        hash.update(bytes.data(), bytes.size());
        pwrite_all(m_temp->fd(), bytes.data(), bytes.size(), off, m_tpath);
        m_e.bytes_copied += bytes.size();
        report("copy", m_e.bytes_copied, m_total);
      },
      sys::Cancel{nullptr, [this] { check(); }},
      [&](const sys::ByteRange& r) { hash.range(r.offset, r.length); });
  } catch (const Error& err) {
    throw stop_from_error(err, "io-error");
  }
  if (got.unreadable_bytes > 0) {
    m_e.unreadable_bytes = got.unreadable_bytes;
    for (const auto& r : got.unreadable) {
      m_e.unreadable.push_back({r.offset, r.length});
    }
    refuse_unreadable();
  }
  if (got.short_at) {
    stop_failed("changed", m_path + " got shorter during the copy");
  }
  if (::ftruncate(m_temp->fd(), static_cast<off_t>(m_size)) < 0) {
    stop_on_errno(errno, "io-error", "truncate " + m_tpath);
  }
  m_source_digest = hash.hex();
  m_e.seconds.copy = seconds_since(t_copy);
}

void Rewrite::refuse_unreadable()
{
  std::string list;
  size_t shown = 0;
  for (const auto& r : m_e.unreadable) {
    if (shown++ == 8) {
      list += ", ...";
      break;
    }
    list += (list.empty() ? "" : ", ") + std::to_string(r.offset) + "+" + std::to_string(r.length);
  }
  m_e.bytes_copied = 0;
  stop_refused("unreadable",
               human_bytes(m_e.unreadable_bytes) + " of " + m_path +
                 " cannot be read (EIO: checksum failures or media errors) at offset+length " +
                 list +
                 "; nothing was changed. Run `vmcsum scrub` on it to tell false checksum "
                 "mismatches from media errors, and `vmcsum repair` to make them readable, or "
                 "restore those ranges from a backup");
}

void Rewrite::flush_copy()
{
  auto t_flush = Clock::now();
  report("flush", m_e.bytes_copied, m_total);
  if (::fdatasync(m_temp->fd()) < 0) {
    stop_on_errno(errno, "io-error", "fdatasync " + m_tpath);
  }
  m_e.seconds.flush = seconds_since(t_flush);
  check();
}

// The copy as read back from the disk, never from the page cache, hashed like the source.
void Rewrite::verify_copy()
{
  auto t_verify = Clock::now();
  SetVerify v;
  v.source_digest = m_source_digest;
  sys::Fd direct;
  const int vfd = open_read_back(direct, v);
  v.copy_digest = hash_read_back(vfd);
  m_e.seconds.verify = seconds_since(t_verify);
  m_e.verify = v;
  if (v.copy_digest != v.source_digest) {
    stop_failed("verify-failed", "the copy read back from disk differs from " + m_path +
                                   " (xxh3-128 " + v.copy_digest + " != " + v.source_digest +
                                   "); the original is untouched");
  }
}

// The descriptor to read the copy back through: the temp file itself once none of its pages
// is cached (fdatasync, POSIX_FADV_DONTNEED, checked with mincore), else an O_DIRECT open.
int Rewrite::open_read_back(sys::Fd& direct, SetVerify& v)
{
  const int tmp = m_temp->fd();
  ::posix_fadvise(tmp, 0, 0, POSIX_FADV_DONTNEED);
  const auto step_check = [this] { check(); };
  auto resident = resident_pages(tmp, m_size, step_check);
  if (resident && *resident > 0) {
    ::fdatasync(tmp);
    ::posix_fadvise(tmp, 0, 0, POSIX_FADV_DONTNEED);
    resident = resident_pages(tmp, m_size, step_check);
  }
  if (resident && *resident == 0) {
    v.method = "page-cache-dropped";
    return tmp;
  }
  // Pages that will not go (or no mincore): O_DIRECT reads bypass the page cache.
  v.resident_pages = resident.value_or(0);
  direct.reset(
    ::openat(m_dirfd, m_temp->name().c_str(), O_RDONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC));
  struct stat dst
  {
  };
  if (!direct || ::fstat(direct.get(), &dst) < 0 || dst.st_ino != m_tst.st_ino ||
      dst.st_dev != m_tst.st_dev) {
    stop_failed("verify-failed",
                "cannot read the copy back from disk: its pages stay cached and O_DIRECT failed");
  }
  v.method = "o_direct";
  return direct.get();
}

std::string Rewrite::hash_read_back(int vfd)
{
  const bool buffered = vfd == m_temp->fd();
  ::posix_fadvise(vfd, 0, 0, POSIX_FADV_SEQUENTIAL);
  Hasher hash;
  uint64_t verified = 0;
  sys::ReadOutcome got;
  try {
    sys::ChunkReader reader({k_chunk, 4096, !buffered, 1});
    got = reader.read_data(
      vfd, m_size, m_tpath,
      [&](uint64_t off, std::span<const uint8_t> bytes) {
        hash.update(bytes.data(), bytes.size());
        if (buffered) { // what was read must not answer a later read from the cache either
          ::posix_fadvise(vfd, static_cast<off_t>(off), static_cast<off_t>(bytes.size()),
                          POSIX_FADV_DONTNEED);
        }
        verified += bytes.size();
        report("verify", verified, m_total);
      },
      sys::Cancel{nullptr, [this] { check(); }},
      [&](const sys::ByteRange& r) { hash.range(r.offset, r.length); });
  } catch (const Error& err) {
    stop_failed("verify-failed", std::string("reading the copy back failed: ") + err.what());
  }
  if (got.unreadable_bytes > 0 || got.short_at) {
    const uint64_t at =
      got.unreadable.empty() ? got.short_at.value_or(0) : got.unreadable[0].offset;
    stop_failed("verify-failed", "reading the copy back failed at offset " + std::to_string(at) +
                                   ": " + (got.short_at ? "end of file" : errno_text(EIO)));
  }
  return hash.hex();
}

// Owner, mode, xattrs, attributes, timestamps: after the data, because writes clear setuid
// bits and security.capability, and chown clears setuid.
void Rewrite::copy_metadata()
{
  const int tmp = m_temp->fd();
  if (::fchown(tmp, m_st.st_uid, m_st.st_gid) < 0) {
    stop_on_errno(errno, "metadata", "chown " + m_tpath);
  }
  if (::fchmod(tmp, m_st.st_mode & 07777) < 0) {
    stop_on_errno(errno, "metadata", "chmod " + m_tpath);
  }
  for (const auto& [name, value] : m_xattrs) {
    if (name.rfind("btrfs.", 0) == 0) {
      continue; // set_flags_while_empty() took care of it, before the data
    }
    if (::fsetxattr(tmp, name.c_str(), value.data(), value.size(), 0) < 0) {
      stop_on_errno(errno, "xattr", "set " + name + " on " + m_tpath);
    }
    m_e.xattrs_copied.push_back(name);
  }
  try {
    uint32_t cur = btrfs::get_attr_flags(tmp, m_tpath);
    uint32_t want = cur | (m_src_attr & (FS_NOATIME_FL | FS_NODUMP_FL | FS_SYNC_FL));
    if (want != cur) {
      btrfs::set_attr_flags(tmp, want, m_tpath);
    }
  } catch (const Error& err) {
    throw stop_from_error(err, "metadata");
  }
  const struct timespec times[2] = {m_st.st_atim, m_st.st_mtim};
  if (::futimens(tmp, times) < 0) {
    stop_on_errno(errno, "metadata", "set the timestamps of " + m_tpath);
  }
  if (::fsync(tmp) < 0) {
    stop_on_errno(errno, "io-error", "fsync " + m_tpath);
  }
  std::string detail;
  if (!flags_match(tmp, *m_ff.subvolume_id, m_tst.st_ino, false, m_target, m_tpath, detail)) {
    stop_failed("flags-not-set",
                "the copy lost the requested state while it was written (" + detail + ")");
  }
  m_e.verify->flags_ok = true;
}

// Right before the swap: the source (through its fd) is unchanged, the name in the directory
// still is that inode (no path is re-resolved: the directory fd is the one opened at the
// start), and nobody opened it meanwhile.
void Rewrite::check_unchanged()
{
  check();
  struct stat now
  {
  };
  if (::fstat(m_src.get(), &now) < 0 || now.st_size != m_st.st_size ||
      !same_times(now.st_mtim, m_st.st_mtim) || !same_times(now.st_ctim, m_st.st_ctim)) {
    stop_failed("changed",
                m_path + " changed during the rewrite (size, mtime or ctime); abandoned");
  }
  struct stat named
  {
  };
  if (::fstatat(m_dirfd, m_name.c_str(), &named, AT_SYMLINK_NOFOLLOW) < 0 ||
      named.st_dev != m_st.st_dev || named.st_ino != m_st.st_ino) {
    stop_failed("changed", m_path + " was renamed or replaced during the rewrite; abandoned");
  }
  if (!m_lease->active()) {
    ProcScan again = scan_proc(m_proc_dir);
    for (const auto& of : again.open_files) {
      if (of.dev == m_st.st_dev && of.ino == m_st.st_ino && of.pid != ::getpid()) {
        stop_failed("in-use", m_path + " was opened by " + of.comm + "[" + std::to_string(of.pid) +
                                "] during the rewrite; abandoned");
      }
    }
  }
}

// RENAME_EXCHANGE rather than a plain rename: if the lease broke in between, the original can
// be put back, and whoever opened it gets the inode that stays.
void Rewrite::swap_in()
{
  // The original goes under the temp name: marked first, so that a kill before it is unlinked
  // leaves a leftover the next run can prove is ours (sys::remove_stale_temp()).
  sys::mark_temp(m_src.get(), m_temp->name());
  if (exchange()) {
    // The temp name now holds the original inode: make sure, then remove it.
    const char* tname = m_temp->name().c_str();
    struct stat old
    {
    };
    if (::fstatat(m_dirfd, tname, &old, AT_SYMLINK_NOFOLLOW) == 0 && old.st_ino == m_st.st_ino &&
        old.st_dev == m_st.st_dev && ::unlinkat(m_dirfd, tname, 0) < 0) {
      m_e.notes.push_back("the old inode could not be removed: " + errno_text(errno) + " (" +
                          m_tpath + ")");
    }
  }
  // The new inode is the file now: its marker names the temp name, drop it.
  m_temp->drop_marker();
  if (::fsync(m_dirfd) < 0) {
    stop_on_errno(errno, "io-error", "fsync " + m_dir);
  }
}

// Puts the copy in place. True when the original is now under the temp name (to be removed),
// false when it is gone (plain rename) or must stay (someone opened it while swapped).
bool Rewrite::exchange()
{
  const int dirfd = m_dirfd;
  const char* tname = m_temp->name().c_str();
  m_temp->arm(false);
  if (::renameat2(dirfd, tname, dirfd, m_name.c_str(), RENAME_EXCHANGE) < 0) {
    int err = errno;
    m_temp->arm(true);
    sys::unmark_temp(m_src.get());
    if (err != EINVAL) {
      stop_on_errno(err, "io-error", "renameat2(RENAME_EXCHANGE) " + m_tpath + " <-> " + m_path);
    }
    // No RENAME_EXCHANGE here: an atomic rename over the original does it, minus the undo.
    check();
    if (::renameat(dirfd, tname, dirfd, m_name.c_str()) < 0) {
      stop_on_errno(errno, "io-error", "rename " + m_tpath + " over " + m_path);
    }
    m_temp->arm(false);
    return false;
  }
  if (!m_lease->broken()) {
    return true;
  }
  if (::renameat2(dirfd, tname, dirfd, m_name.c_str(), RENAME_EXCHANGE) == 0) {
    m_temp->arm(true);
    sys::unmark_temp(m_src.get());
    stop_failed("in-use",
                "another process opened " + m_path + " while it was swapped; put back as it was");
  }
  // Still marked: a later run removes the name once nobody holds a flock on it.
  m_e.notes.push_back("another process opened the old inode while it was swapped out: it is "
                      "kept as " +
                      m_tpath);
  return false;
}

} // namespace

void rewrite_file(const SetTarget& t, sys::Fd source, SetEntry& e, const SetOptions& opts,
                  const std::function<void(const SetProgress&)>& progress,
                  const std::atomic<bool>& cancel)
{
  Rewrite(t, std::move(source), e, opts, progress, cancel).run();
}

} // namespace vmcsum::core::set_impl
