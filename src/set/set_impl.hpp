// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Internal to src/set: what the engine (set_engine.cpp) and the rewrite (rewrite.cpp) share.
#pragma once

#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/set/rewrite.hpp>
#include <vmcsum/sys/fd.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/write/guard.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace vmcsum::core::set_impl {

using Clock = std::chrono::steady_clock;

constexpr size_t k_chunk = 4u << 20;         // read/write unit: bounded memory
constexpr size_t k_max_listed_ranges = 1000; // unreadable ranges listed (all are counted)
constexpr const char* k_compression_xattr = "btrfs.compression";

double seconds_since(Clock::time_point t);
std::string dir_of(const std::string& path);
std::string base_of(const std::string& path);
std::string join(const std::string& dir, const std::string& name);

// The one xxh3-128 hasher (sys/io.hpp): the source digest and the read-back digest.
using sys::Hasher;

// pwrite of all of buf; a failure stops the file (WriteStop).
void pwrite_all(int fd, const uint8_t* buf, size_t len, uint64_t off, const std::string& path);

// Pages of the file that are in the page cache (mincore over a read-only mapping), counted over
// its data ranges only; nullopt when that cannot be told. `check` runs between steps.
std::optional<uint64_t> resident_pages(int fd, uint64_t size, const std::function<void()>& check);

using Xattrs = std::vector<std::pair<std::string, std::string>>;
// Every extended attribute of fd (names and values) except vmcsum's temp markers, retried when
// they change meanwhile.
Xattrs read_xattrs(int fd, const std::string& path);

Outcome outcome_of(SetAction a);
SetState state_of(const FileFacts& f);
SetFacts set_facts_of(const FileFacts& f, bool in_walk);

// True when fd shows the target both through FS_IOC_GETFLAGS and in its inode item, read after
// a commit; `detail` says what was found.
bool flags_match(int fd, uint64_t subvol, uint64_t ino, bool is_dir, CowTarget target,
                 const std::string& path, std::string& detail);

// The file one action works on: its directory opened once, its name in it, the examined facts.
// Nothing is looked up by path again: every open is openat(dirfd, name) and is checked against
// the examined device and inode.
struct SetTarget
{
  int dirfd = -1;
  std::string name;
  std::string dir;  // for messages
  std::string path; // for messages
  const FileFacts* facts = nullptr;
};

// The verified rewrite of one non-empty file (rewrite.cpp), `source` being t's file opened
// O_RDONLY|O_NONBLOCK|O_NOFOLLOW (the only descriptor vmcsum holds on it: the write lease
// needs that). Throws WriteStop.
void rewrite_file(const SetTarget& t, sys::Fd source, SetEntry& e, const SetOptions& opts,
                  const std::function<void(const SetProgress&)>& progress,
                  const std::atomic<bool>& cancel);

} // namespace vmcsum::core::set_impl
