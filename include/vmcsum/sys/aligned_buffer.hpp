// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Buffers for O_DIRECT: page-aligned; large ones mapped on their own. The only aligned buffer type
// of vmcsum (scrub, set, repair, probe and bench all use it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include <sys/mman.h>
#include <unistd.h>

namespace vmcsum::sys {

namespace detail {
struct ReleaseBuffer
{
  size_t mapped = 0; // the length of a mapping, 0 for posix_memalign's memory
  void operator()(uint8_t* p) const
  {
    if (mapped) {
      ::munmap(p, mapped);
    } else {
      std::free(p);
    }
  }
};
} // namespace detail

class AlignedBuffer
{
public:
  AlignedBuffer() = default;
  // `size` bytes aligned to the page size (at least 4096: enough for O_DIRECT on every block
  // device); throws std::bad_alloc. Buffers of k_map_bytes or more are mapped and unmapped on
  // their own: malloc keeps freed blocks of that size in its heap (its mmap threshold grows
  // with each one freed), so a repair that scrubs twice held both passes' read buffers and
  // reached 61 MiB of its 64 MiB budget.
  explicit AlignedBuffer(size_t size)
    : m_size(size)
  {
    if (size >= k_map_bytes) {
      void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        throw std::bad_alloc();
      }
      m_data = Data(static_cast<uint8_t*>(p), detail::ReleaseBuffer{size});
      return;
    }
    const long page = ::sysconf(_SC_PAGESIZE);
    const size_t align = page > 4096 ? static_cast<size_t>(page) : 4096;
    void* p = nullptr;
    if (::posix_memalign(&p, align, size ? size : 1) != 0) {
      throw std::bad_alloc();
    }
    m_data = Data(static_cast<uint8_t*>(p), detail::ReleaseBuffer{0});
  }
  uint8_t* get() const { return m_data.get(); }
  uint8_t* data() { return m_data.get(); }
  const uint8_t* data() const { return m_data.get(); }
  size_t size() const { return m_size; }
  explicit operator bool() const { return m_data != nullptr; }

  static constexpr size_t k_map_bytes = 256 * 1024;

private:
  using Data = std::unique_ptr<uint8_t, detail::ReleaseBuffer>;
  Data m_data;
  size_t m_size = 0;
};

inline AlignedBuffer aligned_buffer(size_t size)
{
  return AlignedBuffer(size);
}

} // namespace vmcsum::sys
