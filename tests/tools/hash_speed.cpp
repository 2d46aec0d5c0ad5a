// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// hash_speed: what this machine's cores can hash with vmcsum's own checksum code (Checksummer,
// the implementation scrub uses), one 4 KiB sector per call as scrub hashes them. For
// bench/scrub_throughput.sh, which divides scrub's throughput by it: `openssl speed` would
// measure another library (and OpenSSL 3.0 has only BLAKE2b-512; btrfs needs BLAKE2b-256).
//   hash_speed CSUM_TYPE [THREADS] [SECONDS]
// CSUM_TYPE 0 crc32c, 1 xxhash, 2 sha256, 3 blake2; THREADS (0 or none: the CPUs this process
// may use). Prints one line: "MiB/s THREADS". Exit 0, or 1 with a message on stderr.
#include <vmcsum/checksum.hpp>
#include <vmcsum/sys/io.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

namespace {

constexpr size_t k_sector = 4096;
constexpr size_t k_buffer = 4u << 20; // one scrub read buffer

} // namespace

int main(int argc, char** argv)
try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: hash_speed CSUM_TYPE [THREADS] [SECONDS]\n");
    return 1;
  }
  const auto type = static_cast<uint16_t>(std::atoi(argv[1]));
  const int asked = argc > 2 ? std::atoi(argv[2]) : 0;
  const size_t threads =
    asked > 0 ? size_t(asked) : vmcsum::sys::usable_cpus(); // as scrub's hashers
  const double seconds = argc > 3 ? std::atof(argv[3]) : 3.0;
  vmcsum::Checksummer check(type); // an unknown type fails here, not in a thread
  std::atomic<bool> stop{false};
  std::vector<uint64_t> hashed(threads, 0);
  std::vector<std::thread> pool;
  const auto start = std::chrono::steady_clock::now();
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      vmcsum::Checksummer sum(type);
      std::vector<uint8_t> buf(k_buffer);
      for (size_t i = 0; i < buf.size(); ++i) {
        buf[i] = static_cast<uint8_t>(i * 131 + t);
      }
      uint8_t out[vmcsum::Checksummer::k_max_size];
      while (!stop.load(std::memory_order_relaxed)) {
        for (size_t off = 0; off < buf.size(); off += k_sector) {
          sum.compute({buf.data() + off, k_sector}, out);
        }
        hashed[t] += buf.size();
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) {
    th.join();
  }
  const double elapsed =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t total = 0;
  for (auto h : hashed) {
    total += h;
  }
  std::printf("%.0f %zu\n", double(total) / 1048576.0 / elapsed, threads);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "hash_speed: %s\n", e.what());
  return 1;
}
