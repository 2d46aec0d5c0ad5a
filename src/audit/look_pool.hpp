// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// audit's look at the files a walk finds, done by a few threads while the walk goes on. Each
// look (lstat, head read, the facts of an image) waits on the disk when the cache is cold, one
// after the other in a single thread (3.4x find's time on a tree of 100k files holding 1000
// images); in flight together the reads overlap. Results come back in the order the files were
// found, so the document is the same as a look in the walking thread would make it.
#pragma once

#include <vmcsum/image/file_facts.hpp>
#include <vmcsum/image/image_format.hpp>
#include <vmcsum/sys/io.hpp>
#include <vmcsum/sys/walk.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace vmcsum::core {

// What a look at one walked file found.
struct Looked
{
  std::string path;                   // for display
  std::optional<std::string> problem; // it could not be stat'ed: the reason
  ImageFormat format = ImageFormat::unknown;
  std::optional<sys::FileRef> ref; // an image: where to reopen it
  std::optional<FileFacts> facts;  // an image that could be read: its facts, from the
                                   // descriptor its head was read from
  // An image's directory, as the walk held it open: whether it is NOCOW (new files there
  // inherit it); nullopt inside when the directory's flags could not be read.
  std::optional<std::optional<bool>> dir_nocow;
  int read_errno = 0; // the read of its head or tail failed (EIO: damaged there)
};

// Looks at one entry with the calling thread's own collector (FactCollector caches per
// filesystem and is not shared between threads).
using LookFn = std::function<Looked(sys::WalkEntry& entry, FactCollector& collector)>;

// Which of one look thread's looks are asked whether they read a disk (sys::DiskReadWatch: two
// getrusage calls per look, 2% of a warm audit's time if every look were asked; a cold tree has
// every look read the disk, so asking one in `every` grows the pool almost as soon): its first,
// one in `every` after it, and the next look after one whose answer was unknown (a major fault:
// code paged in, which says nothing of the tree). Asking only one in eight, a thread whose first
// look paged code in could look at a cold tree of few images whole and never see its reads.
class LookSampler
{
public:
  static constexpr unsigned every = 8;
  // Whether to ask the next look.
  bool ask()
  {
    m_asked = m_looks++ % every == 0 || m_again;
    m_again = false;
    return m_asked;
  }
  // What the look just asked (if it was) was seen to do.
  void told(sys::DiskReadWatch::Seen seen)
  {
    m_again = m_asked && seen == sys::DiskReadWatch::Seen::unknown;
  }

private:
  unsigned m_looks = 0;
  bool m_asked = false;
  bool m_again = false;
};

class LookPool
{
public:
  // `syncs`: the run's record of synced filesystems, shared by every thread's collector.
  LookPool(LookFn look, std::string mountinfo, std::shared_ptr<FsSyncs> syncs);
  ~LookPool();
  LookPool(const LookPool&) = delete;
  LookPool& operator=(const LookPool&) = delete;

  // Queues an entry kept past its visit (WalkEntry::keep); the look threads get them a few at a
  // time (finish() hands over the rest). Blocks while `max_queued` wait: each holds its
  // directory's descriptor open (a batch more may be queued past it, and one be pending).
  void submit(sys::WalkEntry entry);
  // Waits for every entry submitted and returns what was found, in the order submitted.
  // Rethrows what a look threw.
  std::deque<Looked> finish();
  // Whether a look was seen reading a disk (one look in a few is asked): the pool then hands
  // entries over as it does in a cold tree.
  bool saw_disk() const { return m_saw_disk.load(std::memory_order_relaxed); }

private:
  void work();
  void flush();
  // The pending entries looked at in the calling thread: no look thread could be started.
  void look_inline();

  LookFn m_look;
  std::string m_mountinfo;
  std::shared_ptr<FsSyncs> m_syncs;
  std::mutex m_mu;
  // Each side is woken only for what it waits on: the look threads for a batch of entries, the
  // walk for room in the queue or the last look. One condition for both woke every thread
  // three times per entry: a tenth of a warm audit's CPU time went to futexes and the
  // scheduler (perf, bench/audit_tree.sh's tree).
  std::condition_variable m_work; // entries queued, or m_quit
  std::condition_variable m_room; // the queue below max_queued, or every look done
  std::deque<std::pair<size_t, sys::WalkEntry>> m_queue;
  std::vector<sys::WalkEntry> m_pending; // submitted, not yet queued (the walk's thread only)
  // By submission; a deque, so that growing it never moves the (large) results already there.
  std::deque<Looked> m_results;
  size_t m_done = 0;
  bool m_quit = false;
  std::exception_ptr m_error;
  std::vector<std::thread> m_threads; // started by the first submit, more when looks read disks
  std::atomic<unsigned> m_thread_count{0}; // m_threads.size(), read without m_mu
  bool m_inline = false;                   // no thread could be started
  // A look read a disk: each batch wakes every idle thread, to have its looks' reads in flight
  // together. Until then a larger batch wakes one thread, which looks at all of it: cached
  // looks keep up with the walk on one thread. Eight at a time waking four threads (each to
  // find one or two looks, or none) cost a warm audit of bench/audit_tree.sh's tree a third
  // more time in about half its runs (perf stat, 20 runs each: 460-640 context switches and
  // 59-73 ms there, 60-130 and 42-50 ms in the others); 32 waking one: 70-120 switches, 44-59
  // ms every run (median 47-49 ms instead of 45-61). A warm tree with a page or two paged out reads
  // the disk too (this machine's DAMON pages out what stayed idle a minute): that audit goes on as
  // a cold one, as it did before. Written under m_mu, read without it by the walk's thread.
  std::atomic<bool> m_saw_disk{false};
  std::optional<FactCollector> m_inline_collector;
};

} // namespace vmcsum::core
