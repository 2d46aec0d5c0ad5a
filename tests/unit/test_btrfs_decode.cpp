// SPDX-License-Identifier: GPL-2.0-or-later
// The decoders of the buffers the kernel fills for TREE_SEARCH_V2, LOGICAL_INO_V2 and
// INO_PATHS: what they return for well-formed buffers, and that a lying count or offset (what
// the fuzz targets in tests/fuzz feed them) never reads outside the buffer.
#include <vmcsum/btrfs/backref.hpp>
#include <vmcsum/btrfs/tree_search.hpp>
#include <vmcsum/error.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace vmcsum;

namespace {

void put_le(std::vector<uint8_t>& b, uint64_t v, int bytes)
{
  for (int i = 0; i < bytes; ++i) {
    b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
}

// struct btrfs_ioctl_search_header + body.
void put_item(std::vector<uint8_t>& b, uint64_t objectid, uint8_t type, uint64_t offset,
              const std::string& body)
{
  put_le(b, 1, 8); // transid
  put_le(b, objectid, 8);
  put_le(b, offset, 8);
  put_le(b, type, 4);
  put_le(b, body.size(), 4);
  b.insert(b.end(), body.begin(), body.end());
}

// struct btrfs_data_container: bytes_left, bytes_missing, elem_cnt, elem_missed.
std::vector<uint8_t> container(uint32_t elem_cnt)
{
  std::vector<uint8_t> b;
  put_le(b, 0, 4);
  put_le(b, 0, 4);
  put_le(b, elem_cnt, 4);
  put_le(b, 0, 4);
  return b;
}

} // namespace

TEST_CASE("decode_search_buffer: items in order, the last key kept")
{
  std::vector<uint8_t> buf;
  put_item(buf, 257, 1, 0, std::string(160, 'i'));
  put_item(buf, 257, 12, 256, "ref");
  buf.resize(buf.size() + 100); // the rest of the 64 KiB buffer
  std::vector<std::string> seen;
  btrfs::Key last;
  CHECK(btrfs::decode_search_buffer(
    buf, 2,
    [&](const btrfs::Key& k, std::span<const uint8_t> d) {
      seen.push_back(std::to_string(k.objectid) + "/" + std::to_string(k.type) + "/" +
                     std::to_string(d.size()));
      return true;
    },
    last));
  CHECK(seen == std::vector<std::string>{"257/1/160", "257/12/3"});
  CHECK(last.type == 12);
  CHECK(last.offset == 256);
}

TEST_CASE("decode_search_buffer: a visitor that stops ends the walk")
{
  std::vector<uint8_t> buf;
  put_item(buf, 1, 1, 0, "a");
  put_item(buf, 2, 1, 0, "b");
  int calls = 0;
  btrfs::Key last;
  CHECK_FALSE(btrfs::decode_search_buffer(
    buf, 2, [&](const btrfs::Key&, std::span<const uint8_t>) { return ++calls < 1; }, last));
  CHECK(calls == 1);
}

TEST_CASE("decode_search_buffer: nr_items beyond the buffer or a long item is an error")
{
  std::vector<uint8_t> buf;
  put_item(buf, 1, 1, 0, "abc");
  btrfs::Key last;
  auto visit = [](const btrfs::Key&, std::span<const uint8_t>) { return true; };
  // A second header would start past the end: the old loop copied it from outside the buffer.
  CHECK_THROWS_AS(btrfs::decode_search_buffer(buf, 2, visit, last), Error);
  // A length that would wrap pos + len around.
  std::vector<uint8_t> huge;
  put_item(huge, 1, 1, 0, "");
  huge[28] = huge[29] = huge[30] = huge[31] = 0xff;
  CHECK_THROWS_AS(btrfs::decode_search_buffer(huge, 1, visit, last), Error);
}

TEST_CASE("decode_logical_ino: (inode, offset, root) triples, count clamped to the buffer")
{
  auto b = container(6);
  for (uint64_t v : {257, 0, 5, 258, 8192, 256}) {
    put_le(b, v, 8);
  }
  auto refs = btrfs::decode_logical_ino(b);
  REQUIRE(refs.size() == 2);
  CHECK(refs[1].root == 256);
  CHECK(refs[1].inode == 258);
  CHECK(refs[1].offset == 8192);
  // elem_cnt claims more than the buffer holds: only whole triples inside it.
  auto lying = container(3000);
  for (uint64_t v : {257, 0, 5, 1}) {
    put_le(lying, v, 8);
  }
  CHECK(btrfs::decode_logical_ino(lying).size() == 1);
  CHECK(btrfs::decode_logical_ino(std::vector<uint8_t>(8)).empty());
}

TEST_CASE("decode_ino_paths: names by offset from val[0], a wild offset ends the list")
{
  auto b = container(3);
  put_le(b, 24, 8); // three offsets, then the names
  put_le(b, 28, 8);
  put_le(b, uint64_t{1} << 62, 8);
  const std::string names("img\0dir/img2", 12); // the last name lacks its NUL
  b.insert(b.end(), names.begin(), names.end());
  CHECK(btrfs::decode_ino_paths(b, 16) == std::vector<std::string>{"img", "dir/img2"});
  CHECK(btrfs::decode_ino_paths(b, 1) == std::vector<std::string>{"img"});
}
