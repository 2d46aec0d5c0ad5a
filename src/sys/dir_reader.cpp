// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/sys/dir_reader.hpp>
#include <vmcsum/sys/io.hpp>

#include <cerrno>
#include <utility>

namespace vmcsum::sys {

DirReader::DirReader(int fd, OnRead on_read)
  : m_fd(fd)
  , m_on_read(std::move(on_read))
  , m_buf(std::make_unique_for_overwrite<char[]>(buffer_size))
{
}

const struct dirent64* DirReader::next()
{
  if (m_pos >= m_len) {
    const DiskReadWatch watch(static_cast<bool>(m_on_read));
    const ssize_t n = ::getdents64(m_fd, m_buf.get(), buffer_size);
    if (n <= 0) {
      if (n == 0) {
        errno = 0;
      }
      return nullptr;
    }
    m_len = static_cast<size_t>(n);
    m_pos = 0;
    if (m_on_read) {
      const bool from_disk = watch.read_disk();
      for (size_t at = 0; at < m_len;) {
        const auto* ent = reinterpret_cast<const struct dirent64*>(m_buf.get() + at);
        m_on_read(*ent, from_disk);
        at += ent->d_reclen;
      }
    }
  }
  // The kernel aligns each record to 8 bytes (fs/readdir.c: filldir64), the buffer is new[]'s.
  const auto* ent = reinterpret_cast<const struct dirent64*>(m_buf.get() + m_pos);
  m_pos += ent->d_reclen;
  return ent;
}

} // namespace vmcsum::sys
