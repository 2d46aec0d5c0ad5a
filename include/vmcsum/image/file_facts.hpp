// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// What vmcsum knows about one file or directory on btrfs: the facts `show` prints and every
// other command builds on. A fact that cannot be known is left empty and its reason recorded:
// nothing is guessed.
#pragma once

#include <vmcsum/btrfs/ioctl.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/mount_table.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <sys/stat.h>

namespace vmcsum::core {

// Facts of a filesystem, shared by every file on it.
struct FsFacts
{
  btrfs::FsInfo info;
  std::vector<std::string> data_profiles; // largest first; more than one while converting
  std::optional<std::string> data_profiles_unknown;
  bool synced = false; // the run synced it (needed before TREE_SEARCH): saves asking FsSyncs,
                       // whose lock every look thread shares, for each file
  // Subvolume id -> path, or the reason it is unknown; libbtrfsutil walks the tree of roots
  // for each lookup, so images in one subvolume share one answer.
  std::map<uint64_t, std::pair<std::optional<std::string>, std::string>> subvolume_paths;
};

struct FileFacts
{
  std::string path;                          // as given, byte for byte (may not be UTF-8)
  std::string canonical_path;                // symlinks resolved
  std::optional<std::string> symlink_target; // when `path` itself is a symlink
  std::string kind;      // file, directory, symlink, fifo, socket, char-device, block-device
  bool examined = false; // false: nothing could be looked at, see `error`
  // Not looked up: a symlink on the path another user controls (sys::open_named), see `error`.
  bool symlink_refused = false;
  std::optional<std::string> error;
  // Why the file itself could not be opened (no read permission, as non-root): the facts then
  // come from its directory only, and its content (format, flags) is unknown.
  std::optional<std::string> open_error;

  std::string fs; // filesystem type from the mount table ("btrfs", "ext4", ...)
  std::string mount_point;
  std::string mount_options;
  bool on_btrfs = false; // the file lies on btrfs (its btrfs facts below may still be unknown)
  std::optional<std::string> fsid;

  uint64_t dev = 0; // st_dev (on btrfs: one per subvolume)
  uint64_t inode = 0;
  uint64_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mode = 0;
  uint64_t size = 0;
  uint64_t allocated = 0; // st_blocks * 512

  std::optional<uint64_t> subvolume_id;
  std::optional<std::string> subvolume_path;
  std::optional<bool> nocow;     // FS_NOCOW_FL as lsattr shows it ('C')
  std::optional<bool> nodatasum; // the hidden BTRFS_INODE_NODATASUM flag
  std::optional<uint64_t> inode_flags;
  std::optional<uint32_t> attr_flags;            // FS_IOC_GETFLAGS value
  std::optional<std::string> compression;        // zstd, zlib, lzo, none, ...
  std::optional<std::string> compression_source; // property, attribute, mount, or null
  std::optional<std::string> csum_type;
  std::optional<uint32_t> sector_size;
  std::vector<std::string> data_profiles;

  // From FIEMAP (regular files only).
  std::optional<uint64_t> extents;          // counted as filefrag counts them
  std::optional<uint64_t> shared_bytes;     // FIEMAP_EXTENT_SHARED: snapshots, reflinks
  std::optional<uint64_t> compressed_bytes; // FIEMAP_EXTENT_ENCODED (file bytes)
  std::optional<uint64_t> unwritten_bytes;  // preallocated, never written
  std::optional<uint64_t> inline_bytes;     // data inside metadata

  std::map<std::string, std::string> unknown; // fact name -> why it is unknown
  std::vector<std::string> notes;             // things worth saying ("not on btrfs", ...)
};

// Collects facts for many paths, caching filesystem-wide facts per filesystem.
// What a caller already knows of a descriptor it hands to FactCollector::collect_fd, so that
// it is not asked again (audit's walk looks at 1000s of images: each question is a syscall).
struct KnownOfFd
{
  const struct stat* st = nullptr; // its fstat
  bool path_canonical = false;     // the display path is its canonical path (a walk below a
                                   // canonical root, no symlink followed)
  bool readable = false;           // open for reading (not O_PATH, not write-only)
};

// The filesystems synced (BTRFS_IOC_SYNC) in this run, shared by the collectors of one run:
// audit's look threads each have their own FactCollector, and on a busy host every sync waits
// for a transaction commit, so one per filesystem is enough. Thread-safe.
class FsSyncs
{
public:
  // Syncs the filesystem with `fsid` through `fd` unless that was done in this run; returns
  // when it is synced (a caller racing the first one waits for it). Throws what the sync threw.
  void once(const std::string& fsid, int fd, const std::string& path);

private:
  struct Fs
  {
    std::mutex mu; // held through its sync: a racing caller must not read before it is done
    bool done = false;
  };
  std::mutex m_mu; // guards m_fs only: a slow commit on one filesystem holds up no other
  std::map<std::string, std::shared_ptr<Fs>> m_fs;
};

class FactCollector
{
public:
  // `mountinfo` lets tests use a fixture mount table. `syncs`: shared with the run's other
  // collectors (default: this collector's own).
  explicit FactCollector(const std::string& mountinfo = "/proc/self/mountinfo",
                         std::shared_ptr<FsSyncs> syncs = nullptr);

  // The facts of the file open as `fd` (O_PATH is enough), reached as `display_path`: nothing
  // is resolved by name, so a directory swapped for a symlink cannot redirect the examination
  // out of a walked tree (issue 12). A symlink opened with O_PATH|O_NOFOLLOW is the link.
  // `dir_fd`, when given, is the file's directory (same subvolume): when the file itself cannot
  // be opened for reading (not root), the filesystem questions are asked of it instead.
  FileFacts collect_fd(int fd, const std::string& display_path, int dir_fd = -1,
                       const KnownOfFd& known = {});

  // A path named on the command line (show, set): a symlink there is followed once, and its
  // target reported (`follow_symlink=false`: the link itself is examined); what it names is
  // opened once (O_PATH: nothing is read, a FIFO cannot block) and every fact comes from that
  // descriptor (collect_fd), never from the path again (issue 12). Never throws for a problem
  // with the path itself: that becomes `error`/`unknown`.
  FileFacts collect_named(const std::string& path, bool follow_symlink = true);

  // The cached facts of the filesystem that `fd` is on; throws Error when it is not btrfs.
  FsFacts& fs_facts(int fd, const std::string& path);

private:
  // The stat and mount facts of every examined file; false when it must not be opened (a FIFO
  // or a device could block or have side effects: look, don't touch).
  bool fill_examined(FileFacts& f, const struct stat& st, std::optional<sys::MountEntry>& mount);
  // Everything asked of the file open for reading as `fd` (-1: it could not be opened; then
  // its filesystem is asked through `fs_fd`): filesystem, subvolume, NOCOW, NODATASUM, compression,
  // extents.
  FileFacts& fill_from_fd(FileFacts& f, const struct stat& st,
                          const std::optional<sys::MountEntry>& mount, int fd, int fs_fd,
                          const std::string& why, const std::string& path);

  // What one st_dev (a subvolume, on btrfs) answers, so that many files in one subvolume cost
  // one FS_INFO and one INO_LOOKUP.
  struct DevFacts
  {
    FsFacts* fs = nullptr;
    std::optional<Error> fs_error; // not btrfs, or FS_INFO failed
    std::optional<uint64_t> subvolume_id;
    std::string subvolume_error;
  };
  // The facts of st_dev `dev`, asked of `fs_fd` the first time that st_dev is seen.
  const DevFacts& dev_facts(uint64_t dev, int fs_fd, const std::string& path);

  sys::MountTable m_mounts;
  std::shared_ptr<FsSyncs> m_syncs;
  std::map<std::string, std::unique_ptr<FsFacts>> m_fs; // by fsid
  std::map<uint64_t, DevFacts> m_dev;                   // by st_dev
};

// Fills the FIEMAP-derived facts; exposed for tests and for commands that only need these.
struct ExtentSummary
{
  uint64_t extents = 0;
  uint64_t shared_bytes = 0;
  uint64_t compressed_bytes = 0;
  uint64_t unwritten_bytes = 0;
  uint64_t inline_bytes = 0;
  uint64_t mapped_bytes = 0;
};
class ExtentCounter
{
public:
  void add(const btrfs::Extent& e);
  const ExtentSummary& summary() const { return m_sum; }

private:
  ExtentSummary m_sum;
  uint64_t m_expected_physical = 0;
  bool m_first = true;
};

// "file", "directory", ... for a st_mode.
std::string kind_of_mode(uint32_t mode);

} // namespace vmcsum::core
