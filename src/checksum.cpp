// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/checksum.hpp>
#include <vmcsum/error.hpp>

#include <isa-l/crc.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <xxhash.h>

#include <climits>

namespace vmcsum {

namespace {

void put_le32(uint32_t v, uint8_t* out)
{
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<uint8_t>(v >> (8 * i));
  }
}

void put_le64(uint64_t v, uint8_t* out)
{
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<uint8_t>(v >> (8 * i));
  }
}

// sodium_init() picks the fastest BLAKE2b implementation for this CPU; it must run before the
// first crypto_generichash() call. A function-local static runs it exactly once, thread-safely.
void init_sodium()
{
  static const int rc = sodium_init();
  if (rc < 0) {
    throw Error(Errc::internal, "sodium_init failed");
  }
}

} // namespace

// OpenSSL 3 looks the algorithm up by name on every implicit fetch (EVP_sha256() inside
// EVP_DigestInit_ex); fetching once and reusing one context keeps per-sector cost to the hash.
struct Checksummer::Sha256
{
  EVP_MD* md = nullptr;
  EVP_MD_CTX* ctx = nullptr;
  ~Sha256()
  {
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
  }
};

Checksummer::Checksummer(uint16_t csum_type)
  : m_type(csum_type)
  , m_size(0)
{
  // Sizes from btrfs_csums[] in the kernel's fs/btrfs/fs.c.
  switch (csum_type) {
  case 0: // BTRFS_CSUM_TYPE_CRC32
    m_size = 4;
    break;
  case 1: // BTRFS_CSUM_TYPE_XXHASH
    m_size = 8;
    break;
  case 2: // BTRFS_CSUM_TYPE_SHA256
    m_size = 32;
    m_sha256 = std::make_unique<Sha256>();
    m_sha256->md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    m_sha256->ctx = EVP_MD_CTX_new();
    if (!m_sha256->md || !m_sha256->ctx) {
      throw Error(Errc::internal, "OpenSSL: cannot set up SHA256");
    }
    break;
  case 3: // BTRFS_CSUM_TYPE_BLAKE2
    m_size = 32;
    init_sodium();
    break;
  default:
    throw Error(Errc::unsupported, "unknown btrfs checksum type " + std::to_string(csum_type));
  }
}

Checksummer::~Checksummer() = default;
Checksummer::Checksummer(Checksummer&&) noexcept = default;
Checksummer& Checksummer::operator=(Checksummer&&) noexcept = default;

void Checksummer::compute(std::span<const uint8_t> data, uint8_t* out)
{
  switch (m_type) {
  case 0: {
    // ISA-L's crc32_iscsi() is the bare CRC-32C update step: it neither inverts the seed nor
    // the result. The kernel's btrfs csum (crypto "crc32c" / crc32c(~0, ...) then ~crc, see
    // btrfs-progs' btrfs_csum_data()) is the standard CRC-32C with init ~0 and final xor ~0,
    // stored little-endian (put_unaligned_le32). Hence: seed ~0, invert, store LE.
    if (data.size() > static_cast<size_t>(INT_MAX)) {
      throw Error(Errc::internal, "crc32c: buffer too large");
    }
    // crc32_iscsi() takes a non-const pointer but only reads the buffer.
    uint32_t crc = crc32_iscsi(const_cast<unsigned char*>(data.data()),
                               static_cast<int>(data.size()), 0xffffffffU);
    put_le32(~crc, out);
    return;
  }
  case 1:
    // The kernel's xxhash64 shash: xxh64 with seed 0, digest stored with put_unaligned_le64().
    put_le64(XXH64(data.data(), data.size(), 0), out);
    return;
  case 2: {
    unsigned int len = 0;
    if (EVP_DigestInit_ex2(m_sha256->ctx, m_sha256->md, nullptr) != 1 ||
        EVP_DigestUpdate(m_sha256->ctx, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(m_sha256->ctx, out, &len) != 1 || len != m_size) {
      throw Error(Errc::internal, "OpenSSL: SHA256 failed");
    }
    return;
  }
  case 3:
    // btrfs "blake2b-256" is unkeyed BLAKE2b with a 32-byte digest length in the parameter
    // block (not a truncated BLAKE2b-512), which is what crypto_generichash(outlen=32) does.
    if (crypto_generichash(out, m_size, data.data(), data.size(), nullptr, 0) != 0) {
      throw Error(Errc::internal, "libsodium: BLAKE2b failed");
    }
    return;
  default:
    throw Error(Errc::internal, "Checksummer: bad type"); // unreachable: checked in the ctor
  }
}

std::vector<uint8_t> Checksummer::compute(std::span<const uint8_t> data)
{
  std::vector<uint8_t> out(m_size);
  compute(data, out.data());
  return out;
}

std::string to_hex(std::span<const uint8_t> bytes)
{
  static const char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 0xf];
  }
  return s;
}

} // namespace vmcsum
