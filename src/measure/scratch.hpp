// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Scratch files for probe and bench (internal to the core library).
#pragma once

#include <vmcsum/sys/aligned_buffer.hpp>
#include <vmcsum/sys/fd.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace vmcsum::core::detail {

// A file without a name, open read-write with O_DIRECT. Made with O_TMPFILE, so it never
// appears in the directory and the kernel frees it when the last descriptor closes, even if
// vmcsum is killed; where O_TMPFILE is not supported, a named file that is unlinked at once.
class ScratchFile
{
public:
  // Throws Error when the file cannot be made or O_DIRECT is refused. `nocow` sets
  // FS_NOCOW_FL while the file is empty (btrfs then also sets NODATASUM); otherwise the flag,
  // which a NOCOW directory passes on, is cleared.
  static ScratchFile create(const std::string& dir, bool nocow);

  int fd() const { return m_fd.get(); }
  uint64_t ino() const { return m_ino; }
  bool nocow() const { return m_nocow; } // FS_NOCOW_FL as read back
  const std::string& display() const { return m_display; }

private:
  sys::Fd m_fd;
  uint64_t m_ino = 0;
  bool m_nocow = false;
  std::string m_display;
};

// The directory for scratch files: `path` itself if it is a directory, else its parent.
// Throws Error when `path` does not exist.
std::string scratch_dir_of(const std::string& path);

// Free bytes of the filesystem of `dir` (sys::free_bytes); 0 when unknown.
uint64_t free_bytes(const std::string& dir);

} // namespace vmcsum::core::detail
