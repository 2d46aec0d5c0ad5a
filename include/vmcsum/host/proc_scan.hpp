// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Who has a file open, how, and who locks it: /proc/PID/fd, /proc/PID/fdinfo. Not /proc/locks:
// reading it takes the kernel's file lock semaphore for writing (fs/locks.c locks_start():
// percpu_down_write(&file_rwsem), which waits for an RCU grace period,
// Documentation/locking/percpu-rw-semaphore.rst), so every command waited 6-10 ms for it here
// and every file lock on the host waited with it; fdinfo's "lock:" lines say the same per
// open file, without /proc/locks' device numbers, which on btrfs are the superblock's).
// Parsers take text (they are fuzzed); the scanner reads a proc root given by the caller so
// tests can point it at a fixture tree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace vmcsum::core {

// The "flags:" line of /proc/PID/fdinfo/FD (octal open flags). nullopt when absent/garbled.
std::optional<uint32_t> parse_fdinfo_flags(std::string_view fdinfo);

// O_DIRECT's value on this architecture (040000 on x86-64, 0200000 on arm64...).
bool flags_have_o_direct(uint32_t flags);
// O_WRONLY or O_RDWR.
bool flags_writable(uint32_t flags);

struct FileLock
{
  std::string kind; // "POSIX", "FLOCK", "OFDLCK", "LEASE", ...
  std::string mode; // "READ" or "WRITE" (as /proc/locks prints it)
  bool advisory = true;
  std::optional<int> pid; // -1 in /proc/locks for OFD locks becomes nullopt
  uint32_t dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  uint64_t start = 0;
  std::optional<uint64_t> end; // nullopt = "EOF"
  bool blocked = false;        // a "->" waiter line
};

// The "lock:" lines of /proc/PID/fdinfo/FD: the locks held through that open file, each
// "lock:\t" and a line as /proc/locks prints it (fs/proc/fd.c, fs/locks.c lock_get_status()):
//   "lock:\t1: OFDLCK ADVISORY  READ  -1 00:2b:257 100 101"
//   "lock:\t2: POSIX  ADVISORY  WRITE 1234 08:01:1311 0 EOF"
//   "lock:\t3: -> FLOCK  ADVISORY  WRITE 99 00:13:42 0 EOF"
// Unparseable lines are skipped.
std::vector<FileLock> parse_fdinfo_locks(std::string_view fdinfo);

// QEMU's image locks (block/file-posix.c): OFD locks on bytes 100+perm (permissions held) and
// 200+perm (permissions not shared with others). A lock covering byte 101 (RAW_LOCK_PERM_BASE +
// the write permission bit) means a writer; byte 201 alone only forbids other writers, which
// read-only users such as backing files also do.
bool is_qemu_lock(const FileLock& l);
bool is_qemu_write_lock(const FileLock& l);

struct DriveConfig
{
  std::string file;  // path of the image (never empty: nodes without a local file are skipped)
  std::string cache; // "none", "directsync", "writeback", "writethrough", "unsafe", or ""
  std::optional<bool> cache_direct; // cache.direct=on/off
  std::string aio;                  // "native", "threads", "io_uring", or ""
  // O_DIRECT as QEMU would open the file: cache none/directsync or cache.direct=on.
  bool o_direct() const;
};

// Drives of a QEMU command line (argv, as /proc/PID/cmdline splits it on NUL): -drive
// file=...,cache=...,aio=... (also file=json:{...}), -blockdev JSON or key=value with
// driver=file,filename=...,cache.direct=...,aio=... (inline child nodes inherit cache.direct and
// aio from their parents), and -hda..-hdd/-pflash FILE. Commas doubled (",,") inside values are
// unescaped. media=cdrom drives and non-file protocols (nbd:, rbd:, ...) are skipped.
// At most k_max_qemu_drives: a command line is anyone's to write (4 MiB of "-drive" arguments
// in each of twenty processes made a scan take 1.2 GB), and no VM has that many disks.
constexpr size_t k_max_qemu_drives = 1024;
// And at most this many drives of all QEMU processes looked at per scan (qemu_configured_disks).
constexpr size_t k_max_qemu_drives_per_scan = 4096;
std::vector<DriveConfig> parse_qemu_cmdline(const std::vector<std::string>& argv);
// The uid of the process whose /proc directory is `pid_dirfd` when its real, effective, saved
// and filesystem uids are all that one; nullopt when they differ (a setuid program) or cannot
// be read. A directory that is not procfs without a status file (a test's fixture) answers
// with its owner.
std::optional<uid_t> process_uid(int pid_dirfd);

// NUL-separated /proc/PID/cmdline content to argv.
std::vector<std::string> split_cmdline(std::string_view raw);

struct OpenFile
{
  int pid = 0;
  std::string comm;
  int fd = 0;
  std::string target; // readlink of /proc/PID/fd/FD
  uint64_t dev = 0;   // st_dev / st_ino of the target (stat through the fd link)
  uint64_t ino = 0;
  std::optional<uint32_t> flags; // from fdinfo
  // The "lock:" lines of fdinfo (same format as /proc/locks): the locks held through this
  // open file. Unlike /proc/locks, they need no dev:ino match, which is ambiguous on btrfs
  // (/proc/locks shows the superblock's device, stat() the subvolume's).
  std::vector<FileLock> locks;
};

struct ProcScan
{
  std::vector<OpenFile> open_files; // regular files only
  // "PID: reason" for processes that could not be read.
  std::vector<std::string> unreadable;
  struct Qemu
  {
    int pid = 0;
    std::vector<DriveConfig> drives;
    std::optional<uid_t> uid; // its one uid (process_uid()); nullopt: mixed or unreadable
  };
  std::vector<Qemu> qemus; // processes whose comm or argv[0] looks like qemu
};

// Walks proc_root ("/proc" or a fixture tree with the same layout: PID/comm, PID/cmdline,
// PID/fd/N symlinks, PID/fdinfo/N). Processes that vanish or deny access are noted in
// `unreadable`, never fatal. Never opens the targets themselves (stat only), so FIFOs and
// devices cannot block it.
ProcScan scan_proc(const std::string& proc_root);

// A process that has the image open (from /proc/PID/fd and fdinfo): one record for audit's
// open_by[] and set's/repair's users[] (pid, comm, fd, o_direct, writable).
struct ImageUser
{
  int pid = 0;
  std::string comm;
  int fd = 0;
  bool o_direct = false;
  bool writable = false;
};

// A lock on the image, seen in fdinfo "lock:" lines or by probing with F_OFD_GETLK. JSON:
// locks[] (pid, kind, mode, start, end, qemu, seen_by).
struct ImageLock
{
  std::optional<int> pid; // nullopt for OFD locks (they belong to an open file, not a process)
  std::string kind;       // OFDLCK, POSIX, FLOCK, LEASE
  std::string mode;       // READ or WRITE
  uint64_t start = 0;
  std::optional<uint64_t> end; // inclusive; nullopt = to the end of the file
  bool qemu = false;           // on QEMU's lock bytes (100+, 200+)
  bool qemu_write = false;     // on QEMU's "write" permission byte (101): a writer has it open
  std::string seen_by;         // "fdinfo" or "F_OFD_GETLK"
};

struct ImageUsers
{
  std::vector<ImageUser> users;
  std::vector<ImageLock> locks;
};

// The users and locks of one inode (dev, ino) that a scan saw, `skip_pid` (this process, for
// the writers) left out. fdinfo locks without a pid (OFD) are given the holder's pid.
ImageUsers users_in_scan(const ProcScan& procs, uint64_t dev, uint64_t ino, int skip_pid = -1);
// One FileLock as an ImageLock; `owner` stands in for an OFD lock's missing pid.
ImageLock image_lock(const FileLock& l, std::optional<int> owner, std::string seen_by);

} // namespace vmcsum::core
