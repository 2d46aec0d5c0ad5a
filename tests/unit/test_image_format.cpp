// SPDX-License-Identifier: GPL-2.0-or-later
#include <vmcsum/image/image_format.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

using namespace vmcsum::core;

namespace {
using Bytes = std::vector<uint8_t>;

Bytes with_magic(size_t size, size_t off, std::string_view magic)
{
  Bytes b(size, 0);
  std::memcpy(b.data() + off, magic.data(), magic.size());
  return b;
}

ImageFormat detect(const Bytes& head, const Bytes& tail = {}, std::string_view name = "disk")
{
  return detect_image_format(head, tail, name);
}
} // namespace

TEST_CASE("image formats are recognised by their magic")
{
  using namespace std::string_view_literals;
  CHECK(detect(with_magic(4096, 0, "QFI\xfb\x00\x00\x00\x03"sv)) == ImageFormat::qcow2);
  CHECK(detect(with_magic(4096, 0, "QED\0"sv)) == ImageFormat::qed);
  CHECK(detect(with_magic(4096, 0, "KDMV"sv)) == ImageFormat::vmdk);
  CHECK(detect(with_magic(4096, 0, "COWD"sv)) == ImageFormat::vmdk);
  CHECK(detect(with_magic(4096, 0, "# Disk DescriptorFile\nversion=1\n"sv)) == ImageFormat::vmdk);
  CHECK(detect(with_magic(4096, 0x40, "\x7f\x10\xda\xbe"sv)) == ImageFormat::vdi);
  CHECK(detect(with_magic(4096, 0, "vhdxfile"sv)) == ImageFormat::vhdx);
  // Dynamic VHD: footer copy at offset 0.
  CHECK(detect(with_magic(4096, 0, "conectix"sv)) == ImageFormat::vhd);
}

TEST_CASE("a fixed VHD is recognised by its footer even though it starts with an MBR")
{
  Bytes head(4096, 0);
  head[510] = 0x55;
  head[511] = 0xaa;
  using namespace std::string_view_literals;
  CHECK(detect(head, with_magic(512, 0, "conectix"sv)) == ImageFormat::vhd);
  // A tail longer than 512 bytes: the footer is in its last 512.
  CHECK(detect(head, with_magic(1024, 512, "conectix"sv)) == ImageFormat::vhd);
  CHECK(detect(head, with_magic(1024, 0, "conectix"sv)) == ImageFormat::raw);
}

TEST_CASE("raw images: partition tables or the file name")
{
  Bytes mbr(4096, 0);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  CHECK(detect(mbr) == ImageFormat::raw);
  CHECK(detect(with_magic(4096, 512, "EFI PART")) == ImageFormat::raw);

  Bytes zeros(4096, 0);
  CHECK(detect(zeros, {}, "vm-100-disk-0.raw") == ImageFormat::raw);
  CHECK(detect(zeros, {}, "DISK.IMG") == ImageFormat::raw);
  CHECK(detect(zeros, {}, "disk.Raw") == ImageFormat::raw);
  CHECK(detect(zeros, {}, "disk.iso") == ImageFormat::unknown);
  CHECK(detect(zeros, {}, "img") == ImageFormat::unknown);
  CHECK(detect(zeros) == ImageFormat::unknown);
}

TEST_CASE("content wins over the name")
{
  CHECK(detect(with_magic(4096, 0, "QFI\xfb"), {}, "disk.img") == ImageFormat::qcow2);
}

TEST_CASE("short and empty inputs are handled")
{
  CHECK(detect({}, {}, "") == ImageFormat::unknown);
  CHECK(detect(Bytes{'Q', 'F', 'I'}) == ImageFormat::unknown);
  CHECK(detect(Bytes{'Q', 'F', 'I', 0xfb}) == ImageFormat::qcow2);
  // Too short to reach the VDI signature or the MBR.
  CHECK(detect(with_magic(0x43, 0x40, "\x7f\x10\xda")) == ImageFormat::unknown);
  Bytes half_mbr(511, 0);
  half_mbr[510] = 0x55;
  CHECK(detect(half_mbr) == ImageFormat::unknown);
  // A tail shorter than a footer is ignored.
  CHECK(detect({}, with_magic(100, 0, "conectix")) == ImageFormat::unknown);
}

TEST_CASE("format names")
{
  CHECK(format_name(ImageFormat::qcow2) == "qcow2");
  CHECK(format_name(ImageFormat::qed) == "qed");
  CHECK(format_name(ImageFormat::vmdk) == "vmdk");
  CHECK(format_name(ImageFormat::vdi) == "vdi");
  CHECK(format_name(ImageFormat::vhd) == "vhd");
  CHECK(format_name(ImageFormat::vhdx) == "vhdx");
  CHECK(format_name(ImageFormat::raw) == "raw");
  CHECK(format_name(ImageFormat::unknown) == "unknown");
}
