// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The four btrfs data checksums computed in user space, byte-for-byte as the kernel stores them
// in the csum tree, so that checking a sector is a memcmp against the csum-tree bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

struct gcry_md_handle; // libgcrypt's (gcry_md_hd_t), declared here to keep <gcrypt.h> out

namespace vmcsum {

class Checksummer
{
public:
  // BTRFS_CSUM_SIZE (btrfs_tree.h): no btrfs digest is longer.
  static constexpr size_t k_max_size = 32;

  // csum_type is btrfs_tree.h enum btrfs_csum_type (FsInfo::csum_type): 0 crc32c, 1 xxhash64,
  // 2 sha256, 3 blake2b-256. Throws Error{unsupported} for any other value.
  explicit Checksummer(uint16_t csum_type);
  ~Checksummer();
  Checksummer(Checksummer&&) noexcept;
  Checksummer& operator=(Checksummer&&) noexcept;
  Checksummer(const Checksummer&) = delete;
  Checksummer& operator=(const Checksummer&) = delete;

  uint16_t type() const { return m_type; }
  // Digest length in bytes, equal to the kernel's csum_size: 4, 8, 32 or 32.
  size_t size() const { return m_size; }

  // Writes size() bytes to `out`: the digest of `data` (normally one sector) in the byte order
  // of the csum tree. One object per thread.
  void compute(std::span<const uint8_t> data, uint8_t* out);
  std::vector<uint8_t> compute(std::span<const uint8_t> data);

private:
  uint16_t m_type;
  size_t m_size;
};

// SHA-256 of a stream of bytes fed in pieces: the digest that binds a repair backup to its
// repair.
class Sha256Stream
{
public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;

  void update(std::span<const uint8_t> data);
  // The digest of everything fed so far, lower-case hex; nothing is fed after it.
  std::string hex();

private:
  ::gcry_md_handle* m_hd = nullptr;
};

// Lower-case hex of the bytes in order, e.g. "839206e3" for crc32c("123456789"): the form
// btrfs-progs' dump-tree and the kernel log (%*phN) print csums in.
std::string to_hex(std::span<const uint8_t> bytes);

} // namespace vmcsum
