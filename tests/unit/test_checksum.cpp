// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/checksum.hpp>
#include <vmcsum/error.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

using namespace vmcsum;

namespace {
std::string hex_of(Checksummer& c, std::string_view text)
{
  return to_hex(c.compute({reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
}

std::string hex_of(Checksummer& c, const std::vector<uint8_t>& bytes)
{
  return to_hex(c.compute(bytes));
}
} // namespace

TEST_CASE("to_hex writes bytes in order, lower case")
{
  const std::vector<uint8_t> b{0x00, 0x0f, 0xa0, 0xff};
  CHECK(to_hex(b) == "000fa0ff");
  CHECK(to_hex({}).empty());
}

TEST_CASE("crc32c is standard CRC-32C, stored little-endian")
{
  Checksummer c(0);
  CHECK(c.size() == 4);
  CHECK(c.type() == 0);
  // Check value of CRC-32C ("123456789") is 0xE3069283; the csum tree holds it as LE bytes.
  CHECK(hex_of(c, "123456789") == "839206e3");
  // RFC 3720 (iSCSI) appendix B.4: the CRC bytes as sent, which is also little-endian order.
  CHECK(hex_of(c, std::vector<uint8_t>(32, 0x00)) == "aa36918a");
  CHECK(hex_of(c, std::vector<uint8_t>(32, 0xff)) == "43aba862");
  std::vector<uint8_t> inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<uint8_t>(i);
    dec[i] = static_cast<uint8_t>(31 - i);
  }
  CHECK(hex_of(c, inc) == "4e79dd46");
  CHECK(hex_of(c, dec) == "5cdb3f11");
  // A zero-filled 4 KiB sector: btrfs logs it as "csum 0x8941f998" (0x98f94189 as a u32).
  CHECK(hex_of(c, std::vector<uint8_t>(4096, 0)) == "8941f998");
  CHECK(hex_of(c, "") == "00000000");
}

TEST_CASE("xxhash64 is XXH64 with seed 0, stored little-endian")
{
  Checksummer c(1);
  CHECK(c.size() == 8);
  // XXH64("", 0) = 0xEF46DB3751D8E999 (xxHash reference test vector).
  CHECK(hex_of(c, "") == "99e9d85137db46ef");
  // XXH64("abc", 0) = 0x44BC2CF5AD770999.
  CHECK(hex_of(c, "abc") == "990977adf52cbc44");
}

TEST_CASE("sha256 matches FIPS 180-2 vectors")
{
  Checksummer c(2);
  CHECK(c.size() == 32);
  CHECK(hex_of(c, "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex_of(c, "") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // A second digest by the same object carries no state over from the first.
  CHECK(hex_of(c, "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("blake2 is unkeyed BLAKE2b with a 32-byte digest")
{
  Checksummer c(3);
  CHECK(c.size() == 32);
  CHECK(hex_of(c, "abc") == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
  CHECK(hex_of(c, "") == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

TEST_CASE("Sha256Stream: the digest of the pieces is the digest of the whole")
{
  // FIPS 180-2 appendix B.2: the 448-bit message, fed whole, cut in two, and cut inside its
  // first 64-byte block.
  const std::string msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const std::string want = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
  for (size_t cut : {size_t(0), size_t(1), size_t(27), msg.size()}) {
    Sha256Stream s;
    s.update({reinterpret_cast<const uint8_t*>(msg.data()), cut});
    s.update({reinterpret_cast<const uint8_t*>(msg.data()) + cut, msg.size() - cut});
    CHECK(s.hex() == want);
  }
  Sha256Stream empty;
  CHECK(empty.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // One million 'a' (FIPS 180-2 appendix B.3), in 4 KiB pieces and a last short one.
  Sha256Stream million;
  const std::vector<uint8_t> a(4096, 'a');
  size_t left = 1000000;
  for (; left >= a.size(); left -= a.size()) {
    million.update(a);
  }
  million.update({a.data(), left});
  CHECK(million.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("compute into a caller buffer writes exactly size() bytes")
{
  for (uint16_t type = 0; type <= 3; ++type) {
    Checksummer c(type);
    uint8_t out[Checksummer::k_max_size + 1];
    std::fill(std::begin(out), std::end(out), uint8_t{0xa5});
    const std::vector<uint8_t> sector(4096, 0x5a);
    c.compute(sector, out);
    CHECK(out[c.size()] == 0xa5);
    CHECK(to_hex({out, c.size()}) == to_hex(c.compute(sector)));
  }
}

TEST_CASE("a Checksummer can be moved")
{
  Checksummer a(2);
  Checksummer b(std::move(a));
  CHECK(hex_of(b, "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("unknown checksum types are unsupported")
{
  try {
    Checksummer c(4);
    FAIL("no exception");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::unsupported);
  }
}
