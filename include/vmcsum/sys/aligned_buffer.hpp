// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Buffers for O_DIRECT: page-aligned, freed with free().
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace vmcsum::sys {

struct FreeDeleter
{
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

// `size` bytes aligned to 4096 (enough for O_DIRECT on every block device); throws
// std::bad_alloc.
inline AlignedBuffer aligned_buffer(size_t size)
{
  void* p = nullptr;
  if (::posix_memalign(&p, 4096, size) != 0) {
    throw std::bad_alloc();
  }
  return AlignedBuffer(static_cast<uint8_t*>(p));
}

} // namespace vmcsum::sys
