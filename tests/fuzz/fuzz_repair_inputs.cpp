// SPDX-License-Identifier: GPL-2.0-or-later
// libFuzzer target: what `vmcsum repair` reads from files it did not necessarily write: a saved
// scrub report (--from), a backup (--undo, pending backups found in --backup-dir: header,
// records, trailer, the ranges check, the SHA-256 that binds it) and the binding record undo
// reads from the state directory.
#include <vmcsum/error.hpp>
#include <vmcsum/repair/backup_binding.hpp>
#include <vmcsum/repair/repair.hpp>
#include <vmcsum/repair/repair_backup.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  using namespace vmcsum;
  using namespace vmcsum::core;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    for (const auto& [path, ranges] : parse_scrub_report(text)) {
      (void)path;
      (void)ranges;
    }
  } catch (const Error&) {
  }
  try {
    const BackupHeader h = decode_backup_header(text);
    // Whatever a header says, a binding made from it vouches for it and for nothing else.
    const BackupBinding b = decode_backup_binding(encode_backup_binding(binding_of(h, "x", 0)));
    if (binding_mismatch(h, b)) {
      __builtin_trap();
    }
  } catch (const Error&) {
  }
  try {
    (void)binding_mismatch(BackupHeader{}, decode_backup_binding(text));
  } catch (const Error&) {
  }
  // The whole input as a backup file: an input that does not start like a magic line gets one
  // (format 2 when its first byte is odd, format 1 otherwise) so that the fuzzer reaches the
  // record parser of either format.
  static int fd = ::memfd_create("backup", 0);
  if (fd < 0) {
    return 0;
  }
  const std::string file = size == 0 || data[0] == 'v' ? text
                           : (data[0] & 1)             ? "vmcsum-repair-backup 2\n" + text
                                                       : "vmcsum-repair-backup 1\n" + text;
  ::ftruncate(fd, 0);
  ::pwrite(fd, file.data(), file.size(), 0);
  try {
    BackupReader r("/proc/self/fd/" + std::to_string(fd));
    if (r.sha256().size() != 64) {
      __builtin_trap();
    }
    BackupRecord rec;
    int n = 0;
    while (r.next(rec) && ++n < 1000) {
      if (rec.expected_csum.size() > 32) {
        __builtin_trap();
      }
      // A hashed stretch (format 2 only) has a SHA-256 and no data, and fits the write phase's
      // one buffer; any other record has its data.
      if (rec.hashed() ? (r.format() != 2 || rec.sha256.size() != 32 || !rec.data.empty() ||
                          rec.length == 0 || rec.length > k_max_hashed)
                       : rec.length != rec.data.size()) {
        __builtin_trap();
      }
      // next() refuses a record outside the header's ranges: undo never writes elsewhere.
      const auto& rs = r.header().ranges;
      const uint64_t ss = r.header().sectorsize;
      bool inside = false;
      for (const auto& [off, len] : rs) {
        const uint64_t reach = len > ~0ULL - ss ? len : (len + ss - 1) / ss * ss;
        inside = inside || (rec.offset >= off && rec.offset - off < len &&
                            rec.length <= reach - (rec.offset - off));
      }
      if (!inside) {
        __builtin_trap();
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
