// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// LD_PRELOAD=fail_listing.so VMCSUM_TEST_FAIL_LISTING=DEV:INO:N vmcsum ...: getdents64(2) of
// the one directory with that st_dev and st_ino fails with EIO once N reads of it succeeded
// (N=0: its first read fails; N=1: a reading cut short after the entries of the first read).
// No kernel object here can be made to fail a directory's reading on demand; this is how the
// integration tests see what vmcsum reports of it. Every other call is the system call itself.
#define _GNU_SOURCE
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

__attribute__((constructor)) static void init(void)
{
  const char* spec = getenv("VMCSUM_TEST_FAIL_LISTING");
  if (!spec || sscanf(spec, "%llu:%llu:%ld", &g_dev, &g_ino, &g_reads_before) != 3) {
    g_reads_before = -1;
  }
}

ssize_t getdents64(int fd, void* buf, size_t len)
{
  struct stat st;
  if (g_reads_before >= 0 && fstat(fd, &st) == 0 && st.st_dev == g_dev && st.st_ino == g_ino &&
      __atomic_fetch_add(&g_reads, 1, __ATOMIC_RELAXED) >= g_reads_before) {
    errno = EIO;
    return -1;
  }
  return syscall(SYS_getdents64, fd, buf, len);
}
