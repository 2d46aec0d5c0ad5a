// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The image-write safety module shared by `set`, `repair` and `repair --undo`: who else uses an
// image (processes, locks), the refusal codes and their wording, the one way a per-file job
// stops (WriteStop), the one mapping from errno / Error to that stop, the cancel + lease check,
// and the outcome names that JSON prints. Written once so the commands cannot disagree.
#pragma once

#include <vmcsum/host/proc_scan.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmcsum {
class Error;
namespace sys {
class Lease;
}
} // namespace vmcsum

namespace vmcsum::core {

// What happened to one file, for every command that writes images. The JSON value is
// outcome_name(); the strings are stable (tests/schema/*.json).
enum class Outcome {
  flag_set,      // set: attribute set in place (directory, empty file)
  rewritten,     // set: verified copy swapped in
  unchanged,     // set: already in the requested state
  skipped,       // not acted on (a -r walk's symlink, an interrupted run's remaining paths)
  repaired,      // repair
  clean,         // repair: nothing to repair
  left,          // repair: bad sectors left as they are
  restored,      // repair --undo
  would_repair,  // repair --dry-run
  would_restore, // repair --undo --dry-run
  refused,       // a precondition does not hold; nothing was written
  failed,        // an attempt went wrong; the original is kept (see the command)
};

// "flag-set", "rewritten", ... "refused", "failed".
std::string_view outcome_name(Outcome o);
// The inverse of outcome_name(); nullopt for an unknown name.
std::optional<Outcome> outcome_from_name(std::string_view name);
// refused or failed: the file did not get what was asked for.
inline bool is_stop(Outcome o)
{
  return o == Outcome::refused || o == Outcome::failed;
}

// Why a file is not written. `code` is stable kebab-case; `message` is worded to follow the
// file's name ("<path>: <message>").
struct Refusal
{
  std::string code;
  std::string message;
};

// The stable refusal codes shared by set, repair and undo.
namespace refusal_code {
inline constexpr const char* not_found = "not-found";
inline constexpr const char* not_regular = "not-regular";
inline constexpr const char* not_btrfs = "not-btrfs";
inline constexpr const char* read_only = "read-only";
inline constexpr const char* needs_root = "needs-root";
inline constexpr const char* immutable = "immutable";
inline constexpr const char* hard_links = "hard-links";
inline constexpr const char* in_use = "in-use";
inline constexpr const char* locked = "locked";
inline constexpr const char* no_space = "no-space";
inline constexpr const char* changed = "changed";
inline constexpr const char* interrupted = "interrupted";
inline constexpr const char* io_error = "io-error";
} // namespace refusal_code

// Who else has the file open through `fd` (an open descriptor of the examined inode: nothing is
// re-resolved by path) and which locks are on it: /proc/PID/fd and fdinfo from `procs` (this
// process left out), then F_OFD_GETLK on fd for what /proc cannot see (other PID namespaces,
// hidepid). fd may be O_RDONLY; it takes no lock.
ImageUsers find_users(int fd, const ProcScan& procs);
// The same for a path (opened O_RDONLY|O_NONBLOCK|O_NOFOLLOW: never blocks on a FIFO); no
// users when it cannot be opened. Prefer the fd form.
ImageUsers find_users(const std::string& path, const ProcScan& procs);

// The refusals, worded once. `path` is only used in the advice some of them give.
std::vector<Refusal> in_use_refusals(const std::vector<ImageUser>& users,
                                     const std::vector<ImageLock>& locks);
Refusal refuse_read_only(); // read-only mount or read-only subvolume (a snapshot)

// The in-use check of repair and undo, one call for both: find_users(fd, procs) copied into
// `users` and `locks` (the report lists them whatever the verdict), then, when anyone uses the
// image, WriteStop{refused, the first refusal's code, every refusal's message joined by "; "}:
// an image both open and locked says both, so one fix does not reveal the other.
void refuse_if_in_use(int fd, const ProcScan& procs, std::vector<ImageUser>& users,
                      std::vector<ImageLock>& locks);
Refusal refuse_not_regular(const std::string& kind);
Refusal refuse_immutable(uint32_t attr_flags, const std::string& path); // FS_IMMUTABLE/APPEND
Refusal refuse_hard_links(uint64_t nlink);
Refusal refuse_no_space(uint64_t needed, uint64_t data, uint64_t margin, uint64_t free_bytes);

// Ends the work on one file. Thrown by the phases of a write and caught once per file; not a
// std::exception on purpose, so that no generic handler swallows it.
struct WriteStop
{
  Outcome outcome = Outcome::failed; // refused or failed
  std::string code;
  std::string message;
};

[[noreturn]] void stop_refused(std::string code, std::string message);
[[noreturn]] void stop_failed(std::string code, std::string message);

// The one mapping from a failed syscall to a stop. The rule:
//   EROFS          -> refused, "read-only": the filesystem (or snapshot) does not take writes;
//                     the same verdict the plan gives when it sees a read-only mount before
//                     the run, so `--dry-run` and the real run agree. Nothing was changed.
//   ENOSPC, EDQUOT -> failed, "no-space": the space check passed and the write still ran out.
//   anything else  -> failed, `code` (what the caller was doing).
WriteStop stop_from_errno(int err, const std::string& code, const std::string& what);
[[noreturn]] void stop_on_errno(int err, const std::string& code, const std::string& what);
// The same for an Error: by its errno when it has one (message: the Error's); otherwise
// Errc::usage (bad input, e.g. a backup that is not one) is refused, anything else failed,
// both with `code`.
WriteStop stop_from_error(const Error& err, const std::string& code);

// Whether the image behind fd can be written, as the kernel will decide it: a read-only mount
// (fstatvfs ST_RDONLY) or a read-only subvolume, i.e. a snapshot (faccessat W_OK gives EROFS:
// btrfs_permission(); statvfs says read-write there). nullopt = writable as far as we can tell.
std::optional<Refusal> read_only_refusal(int fd);

// The cancel and lease check every long loop of a write calls between chunks: throws
// WriteStop{failed, "interrupted", interrupted_message} once `cancel` is set, and
// WriteStop{failed, "in-use", in_use_message} once the watched lease was broken by someone
// opening the image. The messages say what state things were left in.
class CancelCheck
{
public:
  CancelCheck(const std::atomic<bool>& cancel, std::string interrupted_message,
              std::string in_use_message);
  // The lease to watch from now on (null: none).
  void watch(const sys::Lease* lease) { m_lease = lease; }
  void operator()() const;

private:
  const std::atomic<bool>& m_cancel;
  const sys::Lease* m_lease = nullptr;
  std::string m_interrupted;
  std::string m_in_use;
};

} // namespace vmcsum::core
