// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "look_pool.hpp"

#include <vmcsum/sys/io.hpp>

namespace vmcsum::core {

namespace {

// Threads looking at once. The looks wait on metadata and data reads when the cache is cold:
// four in flight took a cold audit of 100k files holding 1000 images from 3.8x find's time to
// about 2.6x (medians; bench/audit_tree.sh's tree). Once the walk reads its directories ahead
// (sys::WalkOptions::prefetch_threads) the looks are what it waits for, and sixteen did better
// still (1.1x instead of 1.5x); but in a cached tree sixteen threads only contend for two CPUs
// (a warm audit 15% slower). So the pool starts with `look_threads` and adds one each time a
// look had to read a disk, up to `max_look_threads`.
constexpr unsigned look_threads = 4;
constexpr unsigned max_look_threads = 16;
// Entries queued before the walk waits: bounds the directory descriptors kept open.
constexpr size_t max_queued = 64;
// Entries handed to the look threads at once. Waking a sleeping thread costs the walk a futex
// call and the other CPU a wake-up; once per entry, the walk's thread spent more time on that
// than on its own listing (perf, bench/audit_tree.sh's tree: 1000 images among 100k files).
// Once a look has read a disk, `batch` at a time, each waking every idle thread (their reads in
// flight together); until then, `warm_batch` at a time, each waking one thread, which looks at
// all of it (LookPool::m_saw_disk).
constexpr size_t batch = 8;
constexpr size_t warm_batch = 32;

} // namespace

LookPool::LookPool(LookFn look, std::string mountinfo, std::shared_ptr<FsSyncs> syncs)
  : m_look(std::move(look))
  , m_mountinfo(std::move(mountinfo))
  , m_syncs(std::move(syncs))
{
  m_threads.reserve(max_look_threads); // a thread added later never reallocates
}

LookPool::~LookPool()
{
  {
    std::lock_guard<std::mutex> lock(m_mu);
    m_quit = true;
  }
  m_work.notify_all();
  for (auto& t : m_threads) {
    t.join();
  }
}

void LookPool::submit(sys::WalkEntry entry)
{
  m_pending.push_back(std::move(entry));
  if (m_pending.size() >= (m_saw_disk.load(std::memory_order_relaxed) ? batch : warm_batch)) {
    flush();
  }
}

void LookPool::flush()
{
  if (m_pending.empty()) {
    return;
  }
  std::unique_lock<std::mutex> lock(m_mu);
  if (m_threads.empty() && !m_inline) {
    // With none started, the walk's thread looks itself.
    m_inline = sys::start_threads(m_threads, look_threads, [this] { work(); }) == 0;
    m_thread_count = m_inline ? max_look_threads : static_cast<unsigned>(m_threads.size());
  }
  if (m_inline) {
    lock.unlock();
    look_inline();
    return;
  }
  m_room.wait(lock, [this] { return m_queue.size() < max_queued; });
  for (auto& e : m_pending) {
    m_queue.emplace_back(m_results.size(), std::move(e));
    m_results.emplace_back();
  }
  m_pending.clear();
  const bool wake_all = m_saw_disk.load(std::memory_order_relaxed);
  lock.unlock();
  if (wake_all) {
    m_work.notify_all();
  } else {
    m_work.notify_one();
  }
}

void LookPool::look_inline()
{
  for (auto& e : m_pending) {
    // As a look thread would: what a look throws is rethrown by finish(), after the rest.
    Looked found;
    try {
      if (!m_inline_collector) {
        m_inline_collector.emplace(m_mountinfo, m_syncs);
      }
      found = m_look(e, *m_inline_collector);
    } catch (...) {
      if (!m_error) {
        m_error = std::current_exception();
      }
    }
    std::lock_guard<std::mutex> lock(m_mu);
    m_results.push_back(std::move(found));
    ++m_done;
  }
  m_pending.clear();
}

std::deque<Looked> LookPool::finish()
{
  flush();
  std::unique_lock<std::mutex> lock(m_mu);
  m_room.wait(lock, [this] { return m_done == m_results.size(); });
  if (m_error) {
    std::rethrow_exception(std::exchange(m_error, nullptr));
  }
  m_done = 0;
  return std::exchange(m_results, {});
}

void LookPool::work()
{
  std::optional<FactCollector> collector; // made in this thread, on its first look
  LookSampler sampler;
  for (;;) {
    std::unique_lock<std::mutex> lock(m_mu);
    m_work.wait(lock, [this] { return m_quit || !m_queue.empty(); });
    if (m_queue.empty()) {
      return; // m_quit
    }
    auto [index, entry] = std::move(m_queue.front());
    const bool was_full = m_queue.size() >= max_queued;
    m_queue.pop_front();
    lock.unlock();
    if (was_full) {
      m_room.notify_one();
    }
    Looked found;
    std::exception_ptr error;
    const bool may_grow =
      sampler.ask() && m_thread_count.load(std::memory_order_relaxed) < max_look_threads;
    const sys::DiskReadWatch watch(may_grow);
    try {
      if (!collector) {
        collector.emplace(m_mountinfo, m_syncs);
      }
      found = m_look(entry, *collector);
    } catch (...) {
      error = std::current_exception();
    }
    const sys::DiskReadWatch::Seen seen = watch.seen();
    sampler.told(seen);
    const bool read_disk = seen == sys::DiskReadWatch::Seen::disk;
    lock.lock();
    // The entries queued so far woke one thread each batch: the others are woken now.
    const bool turned_cold =
      read_disk && !m_saw_disk.exchange(true, std::memory_order_relaxed) && !m_queue.empty();
    if (read_disk && !m_quit && m_threads.size() < max_look_threads) {
      // Where no thread can be started, no look asks again.
      const bool started = sys::start_threads(m_threads, 1, [this] { work(); }) == 1;
      m_thread_count.store(started ? static_cast<unsigned>(m_threads.size()) : max_look_threads,
                           std::memory_order_relaxed);
    }
    m_results[index] = std::move(found);
    if (error && !m_error) {
      m_error = error;
    }
    const bool all_done = ++m_done == m_results.size();
    lock.unlock();
    if (turned_cold) {
      m_work.notify_all();
    }
    if (all_done) {
      m_room.notify_one();
    }
  }
}

} // namespace vmcsum::core
