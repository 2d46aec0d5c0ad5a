/* SPDX-License-Identifier: GPL-2.0-or-later
 *
 * hold_open: a stand-in for a running VM. Opens FILE the way QEMU does and keeps it open until
 * killed, so tests can check what vmcsum sees in /proc.
 *   hold_open [--direct] [--write] [--qemu-locks] [--lease] [--ready FILE] FILE...
 * --direct      O_DIRECT (QEMU cache=none)
 * --write       O_RDWR instead of O_RDONLY
 * --qemu-locks  take QEMU's OFD read locks (block/file-posix.c): byte 100 + permission bits
 *               (consistent read 100, write 101) and the "shared" bytes 200+ that it does not share
 * --lease      take a read lease (F_SETLEASE F_RDLCK; with O_RDONLY): an open for writing by
 *               anyone else then waits for it to be released, up to lease-break-time
 * --ready FILE  create FILE once everything is open and locked (for the test to wait on)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int lock_byte(int fd, off_t byte)
{
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return fcntl(fd, F_OFD_SETLK, &fl);
}

int main(int argc, char** argv)
{
  int direct = 0, write = 0, locks = 0, lease = 0;
  const char* ready = NULL;
  int i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; ++i) {
    if (strcmp(argv[i], "--direct") == 0) {
      direct = 1;
    } else if (strcmp(argv[i], "--write") == 0) {
      write = 1;
    } else if (strcmp(argv[i], "--qemu-locks") == 0) {
      locks = 1;
    } else if (strcmp(argv[i], "--lease") == 0) {
      lease = 1;
    } else if (strcmp(argv[i], "--ready") == 0 && i + 1 < argc) {
      ready = argv[++i];
    } else {
      fprintf(stderr, "hold_open: unknown option %s\n", argv[i]);
      return 64;
    }
  }
  if (i >= argc) {
    fprintf(stderr,
            "usage: hold_open [--direct] [--write] [--qemu-locks] [--lease] [--ready F] FILE...\n");
    return 64;
  }
  for (; i < argc; ++i) {
    int flags = (write ? O_RDWR : O_RDONLY) | (direct ? O_DIRECT : 0) | O_CLOEXEC;
    int fd = open(argv[i], flags);
    if (fd < 0) {
      fprintf(stderr, "hold_open: %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
    /* A lease holder that does not give way: the break's SIGIO would end the process. */
    if (lease && (signal(SIGIO, SIG_IGN) == SIG_ERR || fcntl(fd, F_SETLEASE, F_RDLCK) < 0)) {
      fprintf(stderr, "hold_open: %s: F_SETLEASE: %s\n", argv[i], strerror(errno));
      return 1;
    }
    if (locks) {
      /* QEMU: RAW_LOCK_PERM_BASE 100 + BLK_PERM_CONSISTENT_READ (bit 0), + BLK_PERM_WRITE (bit
       * 1) when writing; RAW_LOCK_SHARED_BASE 200 + each permission it does not share (write). */
      if (lock_byte(fd, 100) < 0 || (write && lock_byte(fd, 101) < 0) || lock_byte(fd, 201) < 0) {
        fprintf(stderr, "hold_open: %s: F_OFD_SETLK: %s\n", argv[i], strerror(errno));
        return 1;
      }
    }
  }
  if (ready) {
    int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      close(fd);
    }
  }
  for (;;) {
    pause();
  }
}
