// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Small files vmcsum keeps for itself (its state directory): written whole to a temp file,
// fsync'ed, renamed over the old one and the directory fsync'ed, so a crash leaves the old
// version or the new one, never a torn file. Read back with a size limit.
#pragma once

#include <vmcsum/sys/fd.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <sys/stat.h>

namespace vmcsum::sys {

// Creates `dir` and its missing parents with mode 0700; refuses (Error{permission}) a directory
// that is not owned by us or that others can write, or that lies below a directory another
// user may rename in (others_may_rename), since root trusts what it reads there.
void ensure_private_dir(const std::string& dir);

// Whether another user than root and us may rename or replace the entries of the directory
// `st` describes: it is theirs, or group or world writable without the sticky bit (with it, as
// in /tmp, nobody renames what is not theirs).
bool others_may_rename(const struct stat& st);

// Replaces dir/name with `content` atomically and durably (mode 0600). The temp file is
// dir/.name.tmp-XXXXXX (O_EXCL); it is removed on failure. Throws vmcsum::Error.
void replace_file_durably(const std::string& dir, const std::string& name,
                          std::string_view content);

// The same for a file others read (metrics for node_exporter: mode 0644) in a directory that
// need not be private: temp file in `dir`, fsync, rename over dir/name, directory fsync.
void replace_file_atomically(const std::string& dir, const std::string& name,
                             std::string_view content, unsigned mode);

// An exclusive flock on `path` (created 0600, never through a symlink), held until the returned
// descriptor closes: a read-modify-write of a state file by one vmcsum process at a time.
Fd lock_exclusive(const std::string& path);

// The whole file, or nullopt when it does not exist. A file larger than max_bytes, or one that
// is not a regular file (a FIFO, a device, a symlink unless follow_symlinks), is an Error: never
// a partial read, never a blocking open, never unbounded memory.
std::optional<std::string> read_small_file(const std::string& path, size_t max_bytes,
                                           bool follow_symlinks = false);

// At most max_bytes from an open descriptor (a pipe: standard input), until end of file; more is
// an Error naming `what`.
std::string read_fd_limited(int fd, size_t max_bytes, const std::string& what);

} // namespace vmcsum::sys
