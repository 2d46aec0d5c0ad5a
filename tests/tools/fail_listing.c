// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// A getdents64(2) of its own, failing for one directory on demand (fail_listing.h). No kernel
// object here can be made to fail a directory's reading part-way, so this is how the tests see
// what the walker and vmcsum report of it. Every other call is the system call itself.
//  - unit tests: linked into the test binary, whose definition wins over libc's (the walker's
//    DirReader calls getdents64); the rule is set with vmcsum_fail_listing_set();
//  - integration tests: LD_PRELOAD=fail_listing.so VMCSUM_TEST_FAIL_LISTING=DEV:INO:N vmcsum ...
//    (N=0: the directory's first read fails; N=1: a reading cut short after its first read).
#define _GNU_SOURCE
#include "fail_listing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static unsigned long long g_dev, g_ino;
static long g_reads_before = -1;
static long g_reads;

void vmcsum_fail_listing_set(unsigned long long dev, unsigned long long ino, long reads_before)
{
  g_dev = dev;
  g_ino = ino;
  g_reads = 0;
  __atomic_store_n(&g_reads_before, reads_before, __ATOMIC_RELEASE);
}

long vmcsum_fail_listing_reads(void)
{
  return __atomic_load_n(&g_reads, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void init(void)
{
  const char* spec = getenv("VMCSUM_TEST_FAIL_LISTING");
  unsigned long long dev = 0, ino = 0;
  long n = -1;
  if (spec && sscanf(spec, "%llu:%llu:%ld", &dev, &ino, &n) == 3) {
    vmcsum_fail_listing_set(dev, ino, n);
  }
}

ssize_t getdents64(int fd, void* buf, size_t len)
{
  const long reads_before = __atomic_load_n(&g_reads_before, __ATOMIC_ACQUIRE);
  struct stat st;
  if (reads_before >= 0 && fstat(fd, &st) == 0 && st.st_dev == g_dev && st.st_ino == g_ino &&
      __atomic_fetch_add(&g_reads, 1, __ATOMIC_RELAXED) >= reads_before) {
    errno = EIO;
    return -1;
  }
  return syscall(SYS_getdents64, fd, buf, len);
}
