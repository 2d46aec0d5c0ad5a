// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace vmcsum::core {

enum class ImageFormat { qcow2, qed, vmdk, vdi, vhd, vhdx, raw, unknown };

// "qcow2", "qed", "vmdk", "vdi", "vhd", "vhdx", "raw", "unknown".
std::string format_name(ImageFormat f);

// How many bytes of the start of a file detect_image_format wants (fewer is fine for short
// files), and of its end (VHD keeps its footer in the last 512 bytes).
constexpr size_t image_head_bytes = 4096;
constexpr size_t image_tail_bytes = 512;

// Recognises a disk image by content: qcow2 ("QFI\xfb"), QED ("QED\0"), VMDK ("KDMV" sparse
// extent, "COWD" ESX sparse extent, or a "# Disk DescriptorFile" text descriptor), VDI (signature
// 0xbeda107f at 0x40), VHDX ("vhdxfile"), VHD ("conectix" cookie in the footer, or at offset 0 for
// dynamic disks); raw when the name ends in .img/.raw (case-insensitive) or the head holds an MBR
// boot signature (0x55 0xaa at 510) or a GPT header ("EFI PART" at 512). `head` is the first bytes
// of the file, `tail` its last 512 bytes (empty when unknown), `name` its file name.
ImageFormat detect_image_format(std::span<const uint8_t> head, std::span<const uint8_t> tail,
                                std::string_view name);

} // namespace vmcsum::core
