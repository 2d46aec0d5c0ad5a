// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/sys/signals.hpp>

#include <pthread.h>

namespace vmcsum::sys {

namespace {
constexpr int k_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

sigset_t deferred_set()
{
  sigset_t set;
  ::sigemptyset(&set);
  for (int s : k_signals) {
    ::sigaddset(&set, s);
  }
  return set;
}
} // namespace

DeferSignals::DeferSignals()
{
  sigset_t set = deferred_set();
  ::pthread_sigmask(SIG_BLOCK, &set, &m_old);
}

DeferSignals::~DeferSignals()
{
  ::pthread_sigmask(SIG_SETMASK, &m_old, nullptr);
}

int DeferSignals::pending() const
{
  sigset_t set;
  ::sigemptyset(&set);
  if (::sigpending(&set) != 0) {
    return 0;
  }
  for (int s : k_signals) {
    if (::sigismember(&set, s) == 1) {
      return s;
    }
  }
  return 0;
}

} // namespace vmcsum::sys
