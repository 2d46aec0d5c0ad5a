// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#pragma once

#include <signal.h>

namespace vmcsum::sys {

// Holds back SIGINT, SIGTERM, SIGHUP and SIGQUIT while work that leaves something behind (a
// tracefs instance, scratch files) is under way: the calling thread blocks them for the
// object's lifetime, and threads it starts meanwhile inherit the mask. The work polls
// pending() and stops cleanly; the destructor restores the old mask, which delivers a pending
// signal after the cleanup, with its usual effect (the default action ends vmcsum with that
// signal). No handler is installed, so callers keep theirs. Ignored signals stay ignored.
class DeferSignals
{
public:
  DeferSignals();
  ~DeferSignals();
  DeferSignals(const DeferSignals&) = delete;
  DeferSignals& operator=(const DeferSignals&) = delete;

  // The number of one of those signals waiting for this thread or the process, 0 if none.
  // Does not consume it.
  int pending() const;

private:
  sigset_t m_old;
};

} // namespace vmcsum::sys
