// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
#include "look_pool.hpp"

namespace vmcsum::core {

namespace {

// Threads looking at once. The looks wait on metadata and data reads when the cache is cold:
// four in flight took a cold audit of 100k files holding 1000 images from 3.8x find's time to
// about 2.6x (medians; bench/audit_tree.sh's tree), and eight did no better, on two CPUs.
constexpr unsigned look_threads = 4;
// Entries queued before the walk waits: bounds the directory descriptors kept open.
constexpr size_t max_queued = 64;

} // namespace

LookPool::LookPool(LookFn look, std::string mountinfo, std::shared_ptr<FsSyncs> syncs)
  : m_look(std::move(look))
  , m_mountinfo(std::move(mountinfo))
  , m_syncs(std::move(syncs))
{
}

LookPool::~LookPool()
{
  {
    std::lock_guard<std::mutex> lock(m_mu);
    m_quit = true;
  }
  m_cv.notify_all();
  for (auto& t : m_threads) {
    t.join();
  }
}

void LookPool::submit(sys::WalkEntry entry)
{
  std::unique_lock<std::mutex> lock(m_mu);
  if (m_threads.empty()) {
    for (unsigned i = 0; i < look_threads; ++i) {
      m_threads.emplace_back([this] { work(); });
    }
  }
  m_cv.wait(lock, [this] { return m_queue.size() < max_queued; });
  m_queue.emplace_back(m_results.size(), std::move(entry));
  m_results.emplace_back();
  lock.unlock();
  m_cv.notify_all();
}

std::deque<Looked> LookPool::finish()
{
  std::unique_lock<std::mutex> lock(m_mu);
  m_cv.wait(lock, [this] { return m_done == m_results.size(); });
  if (m_error) {
    std::rethrow_exception(std::exchange(m_error, nullptr));
  }
  m_done = 0;
  return std::exchange(m_results, {});
}

void LookPool::work()
{
  std::optional<FactCollector> collector; // made in this thread, on its first look
  for (;;) {
    std::unique_lock<std::mutex> lock(m_mu);
    m_cv.wait(lock, [this] { return m_quit || !m_queue.empty(); });
    if (m_queue.empty()) {
      return; // m_quit
    }
    auto [index, entry] = std::move(m_queue.front());
    m_queue.pop_front();
    lock.unlock();
    m_cv.notify_all(); // room in the queue
    Looked found;
    std::exception_ptr error;
    try {
      if (!collector) {
        collector.emplace(m_mountinfo, m_syncs);
      }
      found = m_look(entry, *collector);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    m_results[index] = std::move(found);
    if (error && !m_error) {
      m_error = error;
    }
    ++m_done;
    lock.unlock();
    m_cv.notify_all();
  }
}

} // namespace vmcsum::core
