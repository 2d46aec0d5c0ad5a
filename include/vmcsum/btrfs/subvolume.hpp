// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <cstdint>
#include <string>

namespace vmcsum::btrfs {

// Path of subvolume `id` relative to the top-level subvolume (libbtrfsutil; needs
// CAP_SYS_ADMIN). "" for the top level itself. Throws Error on failure.
std::string subvolume_path(int fd, uint64_t id, const std::string& path);

} // namespace vmcsum::btrfs
