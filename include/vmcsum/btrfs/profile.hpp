// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <vmcsum/btrfs/ioctl.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace vmcsum::btrfs {

// Block-group profile names as btrfs-progs prints them in lower case: "single", "dup",
// "raid0", "raid1", "raid1c3", "raid1c4", "raid10", "raid5", "raid6".
std::string profile_name(uint64_t block_group_flags);

// How many copies of each data block the profile keeps (1 for single/raid0/raid5/raid6, whose
// redundancy, if any, is parity, not copies).
unsigned profile_copies(const std::string& profile);

// True for the profiles where the 7.0 rule sends O_DIRECT writes to the page cache even for
// NODATASUM files: DUP, RAID1*, RAID10, RAID5/6 (docs/kernel-facts.md §1.4).
bool profile_has_duplication(const std::string& profile);

// The distinct data profiles allocated on the filesystem (more than one during a
// conversion balance), ordered by allocated bytes, largest first.
std::vector<std::string> data_profiles(const std::vector<SpaceInfo>& spaces);

} // namespace vmcsum::btrfs
