// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace vmcsum {

// What kind of failure, so that callers can decide without parsing messages.
enum class Errc { usage, not_btrfs, not_found, permission, busy, unsupported, io, internal };

// The one exception type of the library: carries errno (0 when not from a syscall), what was
// being done, and the path it was done to.
class Error : public std::runtime_error
{
public:
  Error(Errc code, std::string what, std::string path = {}, int sys_errno = 0);

  Errc code() const { return m_code; }
  int sys_errno() const { return m_errno; }
  const std::string& path() const { return m_path; }
  // The message without the path, e.g. "FS_IOC_GETFLAGS: Operation not permitted".
  const std::string& detail() const { return m_detail; }

private:
  Errc m_code;
  int m_errno;
  std::string m_path;
  std::string m_detail;
};

// Maps an errno value to the Errc a caller would act on.
Errc errc_from_errno(int err);

// Throws Error built from the current errno; `op` names the call ("open", "FS_IOC_GETFLAGS").
[[noreturn]] void throw_errno(std::string_view op, const std::string& path = {});
[[noreturn]] void throw_errno(int err, std::string_view op, const std::string& path = {});
// The same with the Errc its callers act on given, whatever errno was.
[[noreturn]] void throw_errno(Errc code, int err, std::string_view op,
                              const std::string& path = {});

// strerror() that is thread-safe.
std::string errno_text(int err);

} // namespace vmcsum
