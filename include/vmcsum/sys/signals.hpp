// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// The one interruption contract of every command (vmcsum(8) SIGNALS):
//  * the first SIGINT, SIGTERM or SIGHUP only asks to stop: StopSignals' handler records it,
//    engines poll stop_requested()/stop_signal() at their safe points, and the command reports
//    what it did with `interrupted: true` and exits 128 + the signal;
//  * a second one ends vmcsum at once with that signal (default action re-raised), except
//    inside a DeferSignals scope (probe, bench), where it waits until the scope's clean-up
//    (tracefs instance, scratch files) is done, so nothing is left behind.
#pragma once

#include <atomic>

#include <signal.h>

namespace vmcsum::sys {

// Installs the stop handler for SIGINT, SIGTERM and SIGHUP for the object's lifetime (one per
// run, in the CLI). A signal ignored when vmcsum started (nohup, a background job of a
// non-interactive shell) stays ignored. No SA_RESTART: blocking waits return EINTR early.
class StopSignals
{
public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

private:
  static constexpr int k_count = 3;
  struct sigaction m_old[k_count]
  {
  };
  bool m_installed[k_count]{};
};

// Set by the first stop signal (lock-free, so engines can hold a reference to it).
const std::atomic<bool>& stop_flag();

// The signal that asked vmcsum to stop: the one the handler caught, else one held back by a
// DeferSignals scope and pending; 0 if none. Does not consume anything.
int stop_signal();
inline bool stop_requested()
{
  return stop_signal() != 0;
}

// Holds back SIGINT, SIGTERM, SIGHUP and SIGQUIT while work that leaves something behind (a
// tracefs instance, scratch files) is under way: the calling thread blocks them for the
// object's lifetime, and threads it starts meanwhile inherit the mask. The work polls
// pending() (= stop_signal()) and stops cleanly; the destructor restores the old mask, which
// delivers the held-back signal after the cleanup: to StopSignals' handler if installed (the
// command then reports as interrupted), else with its default effect.
class DeferSignals
{
public:
  DeferSignals();
  ~DeferSignals();
  DeferSignals(const DeferSignals&) = delete;
  DeferSignals& operator=(const DeferSignals&) = delete;

  int pending() const { return stop_signal(); }

private:
  sigset_t m_old;
};

} // namespace vmcsum::sys
