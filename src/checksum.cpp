// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/checksum.hpp>
#include <vmcsum/error.hpp>

#include <gcrypt.h>
#include <isa-l/crc.h>
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

// libgcrypt is set up once per process before its first use (gcry_check_version, then
// INITIALIZATION_FINISHED), the way systemd's initialize_libgcrypt() does (src/basic/
// gcrypt-util.c, src/shared/ in older releases): libsystemd shares this process's copy, and
// whichever comes first sets it up. Neither takes a lock, so the two must not run at once:
// vmcsum hashes first on the main thread (scrub's and repair's Checksummers and backups are made
// there before any hasher thread starts), and libsystemd sets libgcrypt up only to seal journal
// files it writes, never while vmcsum reads or sends to the journal.
// No secure memory: the hashed data is no secret, and secure memory warns when not root. A
// function-local static runs it exactly once, thread-safely.
void init_gcrypt()
{
  static const bool ok = [] {
    if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
      return true;
    }
    // The library found at run time must be at least the one built against.
    if (!gcry_check_version(GCRYPT_VERSION)) {
      return false;
    }
    gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    return true;
  }();
  if (!ok) {
    throw Error(Errc::internal, std::string("libgcrypt ") + gcry_check_version(nullptr) +
                                  " is older than " GCRYPT_VERSION ", which vmcsum was built with");
  }
}

// An algorithm libgcrypt may refuse says so once, when the Checksummer is made, not on every
// sector: BLAKE2 is not FIPS-approved, and libgcrypt in FIPS mode (/proc/sys/crypto/
// fips_enabled, /etc/gcrypt/fips_enabled or LIBGCRYPT_FORCE_FIPS_MODE) refuses it. A kernel
// in FIPS mode cannot mount a blake2 filesystem either (crypto/testmgr.c: blake2b-256 is not
// fips_allowed).
void require_algo(int algo, const char* name)
{
  init_gcrypt();
  if (gcry_md_test_algo(algo) != 0) {
    throw Error(Errc::unsupported,
                std::string("libgcrypt will not compute ") + name +
                  (gcry_fips_mode_active() ? " (this host runs in FIPS mode)" : ""));
  }
}

// The digest of `data` by libgcrypt's `algo`; gcry_md_hash_buffers (not _buffer) so that an
// error is returned, never an abort.
void gcrypt_digest(int algo, std::span<const uint8_t> data, uint8_t* out)
{
  gcry_buffer_t iov = {};
  iov.size = data.size();
  iov.len = data.size();
  iov.data = const_cast<uint8_t*>(data.data()); // only read
  if (const gcry_error_t err = gcry_md_hash_buffers(algo, 0, out, &iov, 1); err != 0) {
    throw Error(Errc::internal,
                std::string("libgcrypt: ") + gcry_md_algo_name(algo) + ": " + gcry_strerror(err));
  }
}

} // namespace

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
    require_algo(GCRY_MD_SHA256, "sha256");
    break;
  case 3: // BTRFS_CSUM_TYPE_BLAKE2
    m_size = 32;
    require_algo(GCRY_MD_BLAKE2B_256, "blake2b-256");
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
  case 2:
    gcrypt_digest(GCRY_MD_SHA256, data, out);
    return;
  case 3:
    // btrfs "blake2b-256" is unkeyed BLAKE2b with a 32-byte digest length in its parameter
    // block (not a truncated BLAKE2b-512): libgcrypt's BLAKE2B_256.
    gcrypt_digest(GCRY_MD_BLAKE2B_256, data, out);
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

Sha256Stream::Sha256Stream()
{
  require_algo(GCRY_MD_SHA256, "sha256");
  if (const gcry_error_t err = gcry_md_open(&m_hd, GCRY_MD_SHA256, 0); err != 0) {
    throw Error(Errc::internal, std::string("libgcrypt: sha256: ") + gcry_strerror(err));
  }
}

Sha256Stream::~Sha256Stream()
{
  gcry_md_close(m_hd);
}

void Sha256Stream::update(std::span<const uint8_t> data)
{
  gcry_md_write(m_hd, data.data(), data.size());
}

std::string Sha256Stream::hex()
{
  const unsigned char* md = gcry_md_read(m_hd, GCRY_MD_SHA256);
  if (!md) {
    throw Error(Errc::internal, "libgcrypt: sha256: no digest");
  }
  return to_hex({md, 32});
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
