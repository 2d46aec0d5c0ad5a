// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Buffers for O_DIRECT: page-aligned, freed with free(). The only aligned buffer type of
// vmcsum (scrub, set, repair, probe and bench all use it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include <unistd.h>

namespace vmcsum::sys {

class AlignedBuffer
{
public:
  AlignedBuffer() = default;
  // `size` bytes aligned to the page size (at least 4096: enough for O_DIRECT on every block
  // device); throws std::bad_alloc.
  explicit AlignedBuffer(size_t size)
    : m_size(size)
  {
    const long page = ::sysconf(_SC_PAGESIZE);
    const size_t align = page > 4096 ? static_cast<size_t>(page) : 4096;
    void* p = nullptr;
    if (::posix_memalign(&p, align, size ? size : 1) != 0) {
      throw std::bad_alloc();
    }
    m_data.reset(static_cast<uint8_t*>(p));
  }
  uint8_t* get() const { return m_data.get(); }
  uint8_t* data() { return m_data.get(); }
  const uint8_t* data() const { return m_data.get(); }
  size_t size() const { return m_size; }
  explicit operator bool() const { return m_data != nullptr; }

private:
  struct FreeDeleter
  {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, FreeDeleter> m_data;
  size_t m_size = 0;
};

inline AlignedBuffer aligned_buffer(size_t size)
{
  return AlignedBuffer(size);
}

} // namespace vmcsum::sys
