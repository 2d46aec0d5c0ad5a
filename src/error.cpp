// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/error.hpp>

#include <cerrno>
#include <cstring>

namespace vmcsum {

namespace {
std::string compose(const std::string& path, const std::string& detail)
{
  return path.empty() ? detail : path + ": " + detail;
}
} // namespace

Error::Error(Errc code, std::string what, std::string path, int sys_errno)
  : std::runtime_error(compose(path, what))
  , m_code(code)
  , m_errno(sys_errno)
  , m_path(std::move(path))
  , m_detail(std::move(what))
{
}

Errc errc_from_errno(int err)
{
  switch (err) {
  case ENOENT:
  case ENOTDIR:
    return Errc::not_found;
  case EPERM:
  case EACCES:
  case EROFS:
    return Errc::permission;
  case EBUSY:
  case ETXTBSY:
  case EAGAIN:
    return Errc::busy;
  case ENOTTY:
  case EOPNOTSUPP:
  case EINVAL:
  case ENOSYS:
    return Errc::unsupported;
  default:
    return Errc::io;
  }
}

std::string errno_text(int err)
{
  char buf[256];
  // GNU strerror_r returns the message pointer, which may or may not be buf.
  return strerror_r(err, buf, sizeof buf);
}

void throw_errno(Errc code, int err, std::string_view op, const std::string& path)
{
  throw Error(code, std::string(op) + ": " + errno_text(err), path, err);
}

void throw_errno(int err, std::string_view op, const std::string& path)
{
  throw_errno(errc_from_errno(err), err, op, path);
}

void throw_errno(std::string_view op, const std::string& path)
{
  throw_errno(errno, op, path);
}

} // namespace vmcsum
