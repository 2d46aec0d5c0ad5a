// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// Which backups this host's repairs wrote (issue 12 #2). Before its first write to an image,
// repair records the SHA-256 of the committed backup file together with the target it was taken
// of, in the state directory (root-only, 0700: sys::ensure_private_dir):
//   STATE_DIR/repair-backups/<sha256 hex>   one line of JSON: path, fsid, subvolume, inode, dev,
//                                            ranges
// `repair --undo` hashes the backup it is given and restores it only when such a record exists
// and agrees with the backup's header; a backup nobody recorded (forged, or made on another host)
// is refused with code "backup-not-ours", --force or not. The digest covers the header and every
// record, so nothing in a recorded backup can be changed without losing the record.
#pragma once

#include <vmcsum/repair/repair_backup.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vmcsum::core {

struct BackupBinding
{
  std::string sha256; // of the whole backup file
  std::string path;   // the image, as the header names it
  std::string fsid;
  uint64_t subvolume = 0;
  uint64_t inode = 0;
  // st_dev when the backup was taken: informative only, since btrfs hands each subvolume an
  // anonymous device number at mount time that may differ after a remount (fsid+subvolume+inode
  // is the identity that lasts).
  uint64_t dev = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
};

std::string encode_backup_binding(const BackupBinding& b);
// Throws Error{usage} for anything that is not one.
BackupBinding decode_backup_binding(const std::string& text);

// The binding a repair records for the backup it just committed.
BackupBinding binding_of(const BackupHeader& h, const std::string& sha256, uint64_t dev);

// Why `recorded` does not vouch for a backup with header `h` (nullopt: it does). Pure.
std::optional<std::string> binding_mismatch(const BackupHeader& h,
                                            const std::optional<BackupBinding>& recorded);

// Records `b` durably (temp, fsync, rename, directory fsync) under state_dir. Throws Error.
void record_backup_binding(const std::string& state_dir, const BackupBinding& b);

// The record for a backup with this digest, or nullopt. Throws Error for a state directory that
// is not private, or a damaged record.
std::optional<BackupBinding> find_backup_binding(const std::string& state_dir,
                                                 const std::string& sha256);

} // namespace vmcsum::core
