// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/walk.hpp>

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <new>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

namespace vmcsum::sys {

ssize_t pread_full(int fd, void* buf, size_t len, uint64_t off)
{
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, p + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -1;
    }
    if (n == 0) {
      break; // end of file
    }
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

namespace {
// One pread, retried after EINTR only: with O_DIRECT a short read means end of file, and a
// second request at that unaligned offset could fail with EINVAL instead of returning 0.
ssize_t pread_once(int fd, void* buf, size_t len, uint64_t off)
{
  ssize_t n;
  do {
    n = ::pread(fd, buf, len, static_cast<off_t>(off));
  } while (n < 0 && errno == EINTR);
  return n;
}
} // namespace

std::vector<ByteRange> data_ranges(int fd, uint64_t size, const std::string& display)
{
  std::vector<ByteRange> out;
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    off_t d = ::lseek(fd, pos, SEEK_DATA);
    if (d < 0) {
      if (errno == ENXIO) {
        break; // only a hole after pos
      }
      if (errno == EINVAL && pos == 0) {
        return {{0, size}}; // no SEEK_DATA here: everything is data
      }
      throw_errno("lseek(SEEK_DATA)", display);
    }
    off_t h = ::lseek(fd, d, SEEK_HOLE);
    if (h < 0) {
      throw_errno("lseek(SEEK_HOLE)", display);
    }
    h = std::min<off_t>(h, static_cast<off_t>(size));
    if (h <= d) {
      break;
    }
    out.push_back({static_cast<uint64_t>(d), static_cast<uint64_t>(h - d)});
    pos = h;
  }
  return out;
}

// --- Hasher ---

Hasher::Hasher()
  : m_state(XXH3_createState())
{
  if (!m_state) {
    throw std::bad_alloc();
  }
  reset();
}

Hasher::~Hasher()
{
  XXH3_freeState(static_cast<XXH3_state_t*>(m_state));
}

void Hasher::reset()
{
  XXH3_128bits_reset(static_cast<XXH3_state_t*>(m_state));
}

void Hasher::update(const void* data, size_t len)
{
  XXH3_128bits_update(static_cast<XXH3_state_t*>(m_state), data, len);
}

void Hasher::range(uint64_t offset, uint64_t length)
{
  // Little-endian whatever the host, so digests compare across machines.
  uint8_t b[16];
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<uint8_t>(offset >> (8 * i));
    b[8 + i] = static_cast<uint8_t>(length >> (8 * i));
  }
  update(b, sizeof b);
}

std::string Hasher::hex() const
{
  XXH128_hash_t h = XXH3_128bits_digest(static_cast<XXH3_state_t*>(m_state));
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

// --- ChunkReader ---

ChunkReader::ChunkReader()
  : ChunkReader(Options{})
{
}

ChunkReader::ChunkReader(const Options& opts)
  : m_opts(opts)
{
  // O_DIRECT wants whole blocks: the buffer holds a chunk rounded up to 4 KiB.
  m_opts.chunk = std::max<size_t>((m_opts.chunk + 4095) & ~size_t{4095}, 4096);
  m_opts.sector = std::max<uint32_t>(m_opts.sector, 512);
  m_buf = aligned_buffer(m_opts.chunk);
}

ReadOutcome ChunkReader::read_data(int fd, uint64_t size, const std::string& display,
                                   const OnData& on_data, const Cancel& cancel,
                                   const OnRange& on_range)
{
  return read_ranges(fd, data_ranges(fd, size, display), display, on_data, cancel, on_range);
}

ReadOutcome ChunkReader::read_ranges(int fd, const std::vector<ByteRange>& ranges,
                                     const std::string& display, const OnData& on_data,
                                     const Cancel& cancel, const OnRange& on_range)
{
  ReadOutcome out;
  for (const auto& r : ranges) {
    if (on_range) {
      on_range(r);
    }
    if (!read_one(fd, r, display, on_data, cancel, out)) {
      break;
    }
  }
  return out;
}

// One range; false when reading must stop (cancelled, or the file ended early).
bool ChunkReader::read_one(int fd, const ByteRange& r, const std::string& display,
                           const OnData& on_data, const Cancel& cancel, ReadOutcome& out)
{
  const uint64_t end = r.offset + r.length;
  for (uint64_t off = r.offset; off < end;) {
    if (cancel.check) {
      cancel.check();
    }
    if (cancel.requested()) {
      out.cancelled = true;
      return false;
    }
    const uint64_t left = end - off;
    size_t want = static_cast<size_t>(std::min<uint64_t>(m_opts.chunk, left));
    if (m_opts.o_direct) {
      want = (want + 4095) & ~size_t{4095}; // the short read at end of file is accepted
    }
    ssize_t n = m_opts.o_direct ? pread_once(fd, m_buf.get(), want, off)
                                : pread_full(fd, m_buf.get(), want, off);
    if (n < 0 && errno == EIO) {
      retry_sectors(fd, off, static_cast<size_t>(std::min<uint64_t>(want, left)), on_data, out);
      off += std::min<uint64_t>(want, left);
      continue;
    }
    if (n < 0) {
      throw_errno("read at offset " + std::to_string(off), display);
    }
    const size_t got = std::min<size_t>(static_cast<size_t>(n), static_cast<size_t>(left));
    if (got > 0) {
      on_data(off, {m_buf.get(), got});
      out.bytes_read += got;
    }
    if (got < std::min<uint64_t>(want, left)) {
      out.short_at = off + got;
      return false;
    }
    off += got;
  }
  return true;
}

// After an EIO: which sectors of [off, off+len) fail, delivering the others.
void ChunkReader::retry_sectors(int fd, uint64_t off, size_t len, const OnData& on_data,
                                ReadOutcome& out)
{
  const uint64_t ss = m_opts.sector;
  for (uint64_t s = off; s < off + len; s += ss) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(ss, off + len - s));
    const size_t ask = m_opts.o_direct ? static_cast<size_t>((want + 4095) & ~size_t{4095}) : want;
    ssize_t n =
      m_opts.o_direct ? pread_once(fd, m_buf.get(), ask, s) : pread_full(fd, m_buf.get(), ask, s);
    if (n < 0) {
      out.unreadable_bytes += want;
      auto& u = out.unreadable;
      if (!u.empty() && u.back().offset + u.back().length == s) {
        u.back().length += want;
      } else if (u.size() < m_opts.max_listed) {
        u.push_back({s, want});
      }
      continue;
    }
    const size_t got = std::min<size_t>(static_cast<size_t>(n), want);
    if (got > 0) {
      on_data(s, {m_buf.get(), got});
      out.bytes_read += got;
    }
  }
}

// --- read-back ---

Readback readback_hash(int fd, const std::vector<ByteRange>& ranges, uint64_t size,
                       const Cancel& cancel)
{
  Readback rb;
  Hasher all, one;
  std::vector<ByteRange> clipped;
  for (const auto& r : ranges) {
    const uint64_t end = std::min(r.offset + r.length, size);
    clipped.push_back({r.offset, end > r.offset ? end - r.offset : 0});
  }
  ChunkReader::Options o;
  o.o_direct = true;
  ChunkReader reader(o);
  for (const auto& r : clipped) {
    all.range(r.offset, r.length);
    one.reset();
    ReadOutcome got;
    try {
      got = reader.read_ranges(
        fd, {r}, {},
        [&](uint64_t, std::span<const uint8_t> b) {
          all.update(b.data(), b.size());
          one.update(b.data(), b.size());
        },
        cancel);
    } catch (const Error& e) {
      rb.readable = false;
      rb.failed_at = r.offset;
      rb.error = e.sys_errno();
      break;
    }
    if (got.cancelled) {
      rb.cancelled = true;
      rb.readable = false;
      break;
    }
    if (!got.unreadable.empty() || got.short_at) {
      rb.readable = false;
      rb.failed_at = got.unreadable.empty() ? *got.short_at : got.unreadable.front().offset;
      rb.error = got.unreadable.empty() ? 0 : EIO;
      break;
    }
    rb.range_digests.push_back(one.hex());
  }
  rb.digest = all.hex();
  return rb;
}

Readback readback_hash(int dirfd, const std::string& name, uint64_t expect_ino,
                       const std::vector<ByteRange>& ranges, uint64_t size, const Cancel& cancel)
{
  Fd fd(openat_beneath(dirfd, name, O_RDONLY | O_DIRECT | O_NONBLOCK));
  if (!fd) {
    throw_errno("open with O_DIRECT", name);
  }
  struct stat st = {};
  if (::fstat(fd.get(), &st) < 0) {
    throw_errno("fstat", name);
  }
  if (!S_ISREG(st.st_mode) || (expect_ino && st.st_ino != expect_ino)) {
    throw Error(Errc::unsupported, "replaced by another file: not read back", name);
  }
  return readback_hash(fd.get(), ranges, size, cancel);
}

std::optional<uint64_t> free_bytes(int fd)
{
  struct statvfs sv = {};
  if (::fstatvfs(fd, &sv) < 0) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

const std::string& kernel_release()
{
  static const std::string release = [] {
    struct utsname u = {};
    return ::uname(&u) == 0 ? std::string(u.release) : std::string();
  }();
  return release;
}

size_t usable_cpus()
{
  cpu_set_t set;
  CPU_ZERO(&set);
  size_t n = ::sched_getaffinity(0, sizeof set, &set) == 0 ? size_t(CPU_COUNT(&set)) : 0;
  if (n == 0) {
    n = std::thread::hardware_concurrency();
  }
  return std::max<size_t>(n, 1);
}

size_t start_threads(std::vector<std::thread>& threads, size_t n, const std::function<void()>& fn)
{
  size_t started = 0;
  threads.reserve(threads.size() + n); // a failed allocation throws before any thread starts
  try {
    for (; started < n; ++started) {
      threads.emplace_back(fn);
    }
  } catch (const std::system_error&) {
    // clone(2) refused: EAGAIN under RLIMIT_NPROC or pids.max.
  }
  return started;
}

namespace {
bool thread_usage(long& inblock, long& majflt)
{
  struct rusage ru = {};
  if (::getrusage(RUSAGE_THREAD, &ru) != 0) {
    return false;
  }
  inblock = ru.ru_inblock;
  majflt = ru.ru_majflt;
  return true;
}
} // namespace

DiskReadWatch::DiskReadWatch(bool active)
{
  // In the body: the members' own initializers (zero) run before it. In the initializer list,
  // m_active's came first and the zeros after it wiped the thread's counts: every later step
  // of a thread that had ever read the disk looked like a disk read, or, once it had ever taken
  // a major fault, like a fault (a cold audit never read ahead).
  m_active = active && thread_usage(m_inblock, m_majflt);
}

DiskReadWatch::Seen DiskReadWatch::seen() const
{
  long inblock = 0, majflt = 0;
  if (!m_active || !thread_usage(inblock, majflt)) {
    return Seen::memory;
  }
  if (majflt != m_majflt) {
    return Seen::unknown;
  }
  return inblock != m_inblock ? Seen::disk : Seen::memory;
}

} // namespace vmcsum::sys
