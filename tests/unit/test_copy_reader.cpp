// SPDX-License-Identifier: GPL-2.0-or-later
// scrub's CopyReader: each copy read and verified on its device's threads, the bad sectors
// (wrong csum, unreadable) reported per copy, buffers returned to the bounded pool, and the
// threads joined with reads still queued.
#include "scrub/copy_reader.hpp"

#include <vmcsum/checksum.hpp>
#include <vmcsum/error.hpp>
#include <vmcsum/sys/fd.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

using namespace vmcsum;

namespace {

constexpr uint32_t k_ss = 4096;

// A temp file of `sectors` sectors, sector i filled with byte i + 1, unlinked at once.
sys::Fd sectors_file(size_t sectors)
{
  char name[] = "/tmp/vmcsum-copy-reader-XXXXXX";
  const int fd = ::mkstemp(name);
  REQUIRE(fd >= 0);
  ::unlink(name);
  sys::Fd owned(fd);
  for (size_t i = 0; i < sectors; ++i) {
    std::vector<uint8_t> s(k_ss, static_cast<uint8_t>(i + 1));
    REQUIRE(::pwrite(fd, s.data(), s.size(), static_cast<off_t>(i * k_ss)) == k_ss);
  }
  return owned;
}

// crc32c csums of the file's sectors as the csum tree would hold them.
btrfs::RangeCsums csums_of(int fd, size_t sectors)
{
  Checksummer sum(0);
  btrfs::RangeCsums cs;
  cs.sectorsize = k_ss;
  cs.csum_size = static_cast<uint16_t>(sum.size());
  cs.present.assign(sectors, 1);
  cs.csums.resize(sectors * sum.size());
  std::vector<uint8_t> buf(k_ss);
  for (size_t i = 0; i < sectors; ++i) {
    REQUIRE(::pread(fd, buf.data(), k_ss, static_cast<off_t>(i * k_ss)) == k_ss);
    sum.compute(buf, cs.csums.data() + i * sum.size());
  }
  return cs;
}

} // namespace

TEST_CASE("CopyReader: bad and unreadable sectors per copy, buffers back in the pool")
{
  const auto fd = sectors_file(4);
  auto cs = csums_of(fd.get(), 4);
  cs.csums[1 * cs.csum_size] ^= 0xff; // sector 1: stored csum differs from the bytes
  cs.present[2] = 0;                  // sector 2: no csum, never judged
  core::CopyReader reader(2, 4 * k_ss, 0);
  CHECK(reader.free_buffers() == 2);
  core::CopyRead good{1, fd.get(), 0, 4 * k_ss, &cs, {}, false, nullptr};
  // The same sectors one sector further on: sector 3's copy runs past the end of the file.
  core::CopyRead shifted{2, fd.get(), k_ss, 4 * k_ss, &cs, {}, false, nullptr};
  reader.submit(good);
  reader.submit(shifted);
  CHECK(reader.free_buffers() == 0);
  CHECK_THROWS_AS(reader.submit(good), Error);
  reader.wait(good);
  reader.wait(shifted);
  CHECK(reader.free_buffers() == 2);
  CHECK(good.bad == std::vector<uint8_t>{0, 1, 0, 0});
  // shifted: every sector with a csum holds another sector's bytes; sector 3 is unreadable.
  CHECK(shifted.bad == std::vector<uint8_t>{1, 1, 0, 1});
}

TEST_CASE("CopyReader: destroyed with reads queued joins its threads")
{
  const auto fd = sectors_file(2);
  const auto cs = csums_of(fd.get(), 2);
  std::vector<core::CopyRead> reads(8);
  {
    core::CopyReader reader(8, 2 * k_ss, 0);
    for (auto& r : reads) {
      r = {1, fd.get(), 0, 2 * k_ss, &cs, {}, false, nullptr};
      reader.submit(r);
    }
  } // no wait(): the destructor stops and joins; reads not started are dropped
  CHECK(true);
}
