// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// When a walk takes its tree for cold (and starts reading directories ahead, src/sys/walk.cpp):
// once its own opens or listings of two different directories among the last `recent`
// directories it opened read a disk. One is not enough: a cached tree has a block or two
// dropped now and then (this machine's DAMON pages out what stayed idle a minute; memory
// pressure elsewhere), and one 16 KiB tree block read started 8 threads and 40 listings in about
// one warm audit of bench/audit_tree.sh's tree in eight; a cold tree reads the disk in every
// directory, so its second directory starts it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

namespace vmcsum::sys {

class ColdEvidence
{
public:
  static constexpr uint64_t recent = 4;

  // The walk's open or listing of the directory it opened `dir`-th (its root: 0) read a disk;
  // `latest`: the number of the last directory it opened (a parent's listing goes on after its
  // subdirectories were walked, so `dir` may be older). True: the tree is cold.
  bool disk_read(uint64_t dir, uint64_t latest)
  {
    const bool cold = m_last && *m_last != dir && std::min(*m_last, dir) + recent > latest;
    m_last = m_last ? std::max(*m_last, dir) : dir;
    return cold;
  }

private:
  std::optional<uint64_t> m_last; // the most recently opened directory that read a disk
};

} // namespace vmcsum::sys
