// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/sys/dir_reader.hpp>

#include <cerrno>

namespace vmcsum::sys {

DirReader::DirReader(int fd)
  : m_fd(fd)
  , m_buf(std::make_unique_for_overwrite<char[]>(buffer_size))
{
}

const struct dirent64* DirReader::next()
{
  if (m_pos >= m_len) {
    const ssize_t n = ::getdents64(m_fd, m_buf.get(), buffer_size);
    if (n <= 0) {
      if (n == 0) {
        errno = 0;
      }
      return nullptr;
    }
    m_len = static_cast<size_t>(n);
    m_pos = 0;
  }
  // The kernel aligns each record to 8 bytes (fs/readdir.c: filldir64), the buffer is new[]'s.
  const auto* ent = reinterpret_cast<const struct dirent64*>(m_buf.get() + m_pos);
  m_pos += ent->d_reclen;
  return ent;
}

} // namespace vmcsum::sys
