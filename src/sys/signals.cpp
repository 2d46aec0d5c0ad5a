// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include <vmcsum/sys/signals.hpp>

#include <csignal>

#include <pthread.h>

namespace vmcsum::sys {

namespace {
constexpr int k_stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr int k_deferred[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

std::atomic<bool> g_stop{false};
// The first stop signal, claimed with one compare-and-swap: two signals sent together can run
// their handlers at the same time on two threads, and a plain "was one seen?" test let both
// handlers see none, so neither ended vmcsum (the likely cause of a document written after
// SIGINT and SIGTERM sent together, seen once in it.cli_tty under load).
std::atomic<int> g_signal{0};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_stop_signal(int sig)
{
  int first = 0;
  if (!g_signal.compare_exchange_strong(first, sig)) {
    // The second stop signal (any of them): the user insists. signal() and raise() are
    // async-signal-safe; the default action ends vmcsum with that signal, so the shell
    // reports 128 + it as usual.
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  g_stop.store(true);
}

sigset_t deferred_set()
{
  sigset_t set;
  ::sigemptyset(&set);
  for (int s : k_deferred) {
    ::sigaddset(&set, s);
  }
  return set;
}
} // namespace

StopSignals::StopSignals()
{
  g_stop.store(false);
  g_signal.store(0);
  struct sigaction sa
  {
  };
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = 0; // no SA_RESTART: blocking waits return early
  ::sigemptyset(&sa.sa_mask);
  for (int i = 0; i < k_count; ++i) {
    ::sigaction(k_stop_signals[i], nullptr, &m_old[i]);
    m_installed[i] = m_old[i].sa_handler != SIG_IGN;
    if (m_installed[i]) {
      ::sigaction(k_stop_signals[i], &sa, nullptr);
    }
  }
}

StopSignals::~StopSignals()
{
  for (int i = 0; i < k_count; ++i) {
    if (m_installed[i]) {
      ::sigaction(k_stop_signals[i], &m_old[i], nullptr);
    }
  }
}

const std::atomic<bool>& stop_flag()
{
  return g_stop;
}

int stop_signal()
{
  if (int sig = g_signal.load()) {
    return sig;
  }
  sigset_t set;
  ::sigemptyset(&set);
  if (::sigpending(&set) != 0) {
    return 0;
  }
  for (int s : k_deferred) {
    if (::sigismember(&set, s) == 1) {
      return s;
    }
  }
  return 0;
}

DeferSignals::DeferSignals()
{
  sigset_t set = deferred_set();
  ::pthread_sigmask(SIG_BLOCK, &set, &m_old);
}

DeferSignals::~DeferSignals()
{
  ::pthread_sigmask(SIG_SETMASK, &m_old, nullptr);
}

} // namespace vmcsum::sys
