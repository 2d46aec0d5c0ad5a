// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/image/image_format.hpp>

#include <algorithm>
#include <cstring>

namespace vmcsum::core {

namespace {
bool bytes_at(std::span<const uint8_t> buf, size_t off, std::string_view magic)
{
  return buf.size() >= off + magic.size() &&
         std::memcmp(buf.data() + off, magic.data(), magic.size()) == 0;
}

bool ends_with_icase(std::string_view s, std::string_view suffix)
{
  if (s.size() < suffix.size()) {
    return false;
  }
  return std::equal(suffix.begin(), suffix.end(), s.end() - suffix.size(), [](char a, char b) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    return lower(a) == lower(b);
  });
}
} // namespace

std::string format_name(ImageFormat f)
{
  switch (f) {
  case ImageFormat::qcow2:
    return "qcow2";
  case ImageFormat::qed:
    return "qed";
  case ImageFormat::vmdk:
    return "vmdk";
  case ImageFormat::vdi:
    return "vdi";
  case ImageFormat::vhd:
    return "vhd";
  case ImageFormat::vhdx:
    return "vhdx";
  case ImageFormat::raw:
    return "raw";
  case ImageFormat::unknown:
    break;
  }
  return "unknown";
}

ImageFormat detect_image_format(std::span<const uint8_t> head, std::span<const uint8_t> tail,
                                std::string_view name)
{
  using namespace std::string_view_literals;
  if (bytes_at(head, 0, "QFI\xfb"sv)) {
    return ImageFormat::qcow2;
  }
  if (bytes_at(head, 0, "QED\0"sv)) {
    return ImageFormat::qed;
  }
  // "COWD" is the older ESX sparse extent; QEMU's vmdk_probe() accepts it next to "KDMV".
  if (bytes_at(head, 0, "KDMV"sv) || bytes_at(head, 0, "COWD"sv) ||
      bytes_at(head, 0, "# Disk DescriptorFile"sv)) {
    return ImageFormat::vmdk;
  }
  // VDI_SIGNATURE 0xbeda107f, stored little-endian in the pre-header.
  if (bytes_at(head, 0x40, "\x7f\x10\xda\xbe"sv)) {
    return ImageFormat::vdi;
  }
  if (bytes_at(head, 0, "vhdxfile"sv)) {
    return ImageFormat::vhdx;
  }
  // Dynamic VHDs copy the footer to offset 0; fixed VHDs are raw data plus the footer, so the
  // tail must be checked before the MBR test below would call them raw.
  if (bytes_at(head, 0, "conectix"sv) ||
      (tail.size() >= 512 && bytes_at(tail, tail.size() - 512, "conectix"sv))) {
    return ImageFormat::vhd;
  }
  if ((head.size() >= 512 && head[510] == 0x55 && head[511] == 0xaa) ||
      bytes_at(head, 512, "EFI PART"sv)) {
    return ImageFormat::raw;
  }
  if (ends_with_icase(name, ".img") || ends_with_icase(name, ".raw")) {
    return ImageFormat::raw;
  }
  return ImageFormat::unknown;
}

} // namespace vmcsum::core
