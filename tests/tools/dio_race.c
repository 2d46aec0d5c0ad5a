// SPDX-License-Identifier: GPL-2.0-or-later
// dio_race: O_DIRECT writes from a buffer another thread keeps changing (test fixture).
//
// Usage: dio_race [--size BYTES] [--block BYTES] [--nocow-first] FILE
//
// One thread writes FILE sequentially, block by block, with pwrite() on an O_DIRECT fd, always
// from the same page-aligned buffer. A second thread increments one byte in every 64-byte line of
// that buffer, over and over, until the writer is done. On a kernel without 968f19c5b1b7 ("btrfs:
// always fallback to buffered write if the inode requires checksum", 6.15; stable 6.12.77 and
// 6.6.130, never 6.1) btrfs checksums the user pages and then submits them while they still
// change, so many blocks of a checksummed FILE end up with a data csum that does not match what
// reached the disk: a false checksum mismatch. With --nocow-first the still-empty FILE is made
// NOCOW (hence NODATASUM) first, which is the control: it must read back without errors.
//
// Exit status: 0 done; 1 I/O or system error (message on stderr); 2 --nocow-first failed (FILE
// not empty, FS_IOC_SETFLAGS refused, or the flag did not stick); 64 usage error. A summary line
// goes to stdout.

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
  k_exit_error = 1,
  k_exit_nocow = 2,
  k_exit_usage = 64,
  k_line = 64,
  // On a one-CPU, non-preemptive kernel (user-mode-linux 6.1) a modifier that never yields starves
  // the writer; yielding this often keeps 8 MiB under a second and still corrupts many blocks.
  k_yield_every = 100000,
};

struct Race
{
  int fd;
  unsigned char* buf;
  size_t block;
  uint64_t size;
  atomic_bool stop;
  uint64_t modifications; // written by the modifier only, read after join
  uint64_t written;       // written by the writer only, read after join
  int write_errno;        // 0, or errno of the failed pwrite (-1: short write)
};

static void usage(FILE* out)
{
  fprintf(out, "usage: dio_race [--size BYTES] [--block BYTES] [--nocow-first] FILE\n"
               "  --size BYTES   bytes to write (K/M/G suffixes allowed; default 8M)\n"
               "  --block BYTES  size of each O_DIRECT pwrite (default 4096)\n"
               "  --nocow-first  make the empty FILE NOCOW (FS_NOCOW_FL) before writing\n");
}

// Parses a positive byte count with an optional K/M/G (binary) suffix. Returns 0 on error.
static uint64_t parse_bytes(const char* text)
{
  char* end = NULL;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || end == text || text[0] == '-') {
    return 0;
  }
  unsigned shift = 0;
  switch (*end) {
  case '\0':
    break;
  case 'K':
  case 'k':
    shift = 10;
    break;
  case 'M':
  case 'm':
    shift = 20;
    break;
  case 'G':
  case 'g':
    shift = 30;
    break;
  default:
    return 0;
  }
  if (*end != '\0' && end[1] != '\0') {
    return 0;
  }
  if (value > (UINT64_MAX >> shift)) {
    return 0;
  }
  return (uint64_t)value << shift;
}

// Sets FS_NOCOW_FL on the (empty) file and reads the flags back. btrfs_ioctl_setflags() accepts
// +C on a non-empty file without error but does not apply it, so the read-back is the only proof.
static int make_nocow(int fd, const char* path)
{
  struct stat st;
  if (fstat(fd, &st) != 0) {
    fprintf(stderr, "dio_race: fstat %s: %s\n", path, strerror(errno));
    return k_exit_error;
  }
  if (st.st_size != 0) {
    fprintf(stderr, "dio_race: %s: --nocow-first needs an empty file (size %lld)\n", path,
            (long long)st.st_size);
    return k_exit_nocow;
  }
  // The kernel reads and writes an int here, whatever the _IOR(..., long) in the macro says.
  int flags = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    fprintf(stderr, "dio_race: FS_IOC_GETFLAGS %s: %s\n", path, strerror(errno));
    return k_exit_nocow;
  }
  flags |= FS_NOCOW_FL;
  if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) {
    fprintf(stderr, "dio_race: FS_IOC_SETFLAGS +C %s: %s\n", path, strerror(errno));
    return k_exit_nocow;
  }
  flags = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    fprintf(stderr, "dio_race: FS_IOC_GETFLAGS %s: %s\n", path, strerror(errno));
    return k_exit_nocow;
  }
  if ((flags & FS_NOCOW_FL) == 0) {
    fprintf(stderr, "dio_race: %s: FS_NOCOW_FL did not stick (flags 0x%x)\n", path,
            (unsigned)flags);
    return k_exit_nocow;
  }
  return 0;
}

static void* modifier(void* arg)
{
  struct Race* race = arg;
  // volatile: every change must really reach memory while a write may be reading the pages.
  // Increment rather than flip: a flipped sector is back to its checksummed contents after
  // every second pass, which hid about half of the races with buffers larger than one sector.
  volatile unsigned char* buf = race->buf;
  uint64_t count = 0;
  unsigned since_yield = 0;
  while (!atomic_load_explicit(&race->stop, memory_order_relaxed)) {
    for (size_t off = 0; off < race->block; off += k_line) {
      buf[off]++;
      ++count;
      if (++since_yield == k_yield_every) {
        since_yield = 0;
        sched_yield();
        if (atomic_load_explicit(&race->stop, memory_order_relaxed)) {
          break;
        }
      }
    }
  }
  race->modifications = count;
  return NULL;
}

static void* writer(void* arg)
{
  struct Race* race = arg;
  for (uint64_t off = 0; off < race->size; off += race->block) {
    ssize_t n = pwrite(race->fd, race->buf, race->block, (off_t)off);
    if (n < 0) {
      race->write_errno = errno;
      break;
    }
    if ((size_t)n != race->block) {
      race->write_errno = -1;
      race->written += (uint64_t)n;
      break;
    }
    race->written += (uint64_t)n;
  }
  return NULL;
}

int main(int argc, char** argv)
{
  static const struct option options[] = {
    {"size", required_argument, NULL, 's'},
    {"block", required_argument, NULL, 'b'},
    {"nocow-first", no_argument, NULL, 'n'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  uint64_t size = 8u << 20;
  uint64_t block = 4096;
  int nocow_first = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "s:b:nh", options, NULL)) != -1) {
    switch (opt) {
    case 's':
      size = parse_bytes(optarg);
      if (size == 0) {
        fprintf(stderr, "dio_race: bad --size '%s'\n", optarg);
        return k_exit_usage;
      }
      break;
    case 'b':
      block = parse_bytes(optarg);
      if (block == 0) {
        fprintf(stderr, "dio_race: bad --block '%s'\n", optarg);
        return k_exit_usage;
      }
      break;
    case 'n':
      nocow_first = 1;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return k_exit_usage;
    }
  }
  if (optind != argc - 1) {
    usage(stderr);
    return k_exit_usage;
  }
  const char* path = argv[optind];

  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) {
    page = 4096;
  }
  // O_DIRECT needs the buffer, length and offset aligned to the logical block size; a whole
  // number of pages keeps every block inside pages of its own.
  if (block % 512 != 0 || block > (1u << 30)) {
    fprintf(stderr, "dio_race: --block must be a multiple of 512 (got %llu)\n",
            (unsigned long long)block);
    return k_exit_usage;
  }
  if (size % block != 0) {
    fprintf(stderr, "dio_race: --size (%llu) must be a multiple of --block (%llu)\n",
            (unsigned long long)size, (unsigned long long)block);
    return k_exit_usage;
  }

  int fd = open(path, O_CREAT | O_WRONLY | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "dio_race: open %s: %s\n", path, strerror(errno));
    return k_exit_error;
  }
  if (nocow_first) {
    int rc = make_nocow(fd, path);
    if (rc != 0) {
      close(fd);
      return rc;
    }
  }

  size_t alloc = ((size_t)block + (size_t)page - 1) / (size_t)page * (size_t)page;
  void* mem = NULL;
  int err = posix_memalign(&mem, (size_t)page, alloc);
  if (err != 0) {
    fprintf(stderr, "dio_race: posix_memalign: %s\n", strerror(err));
    close(fd);
    return k_exit_error;
  }
  // Bytes that vary within every sector, as a guest's data does: a sector of one repeated byte
  // is what scrub takes for a lost sector or a fill ("uniform-copy"), never for the race, and
  // the modifier's increments would now and then bring a constant background back to it.
  for (size_t i = 0; i < alloc; ++i) {
    ((unsigned char*)mem)[i] = (unsigned char)(0x5a + i * 37 + (i >> 8));
  }

  struct Race race = {
    .fd = fd,
    .buf = mem,
    .block = (size_t)block,
    .size = size,
  };
  atomic_init(&race.stop, false);

  pthread_t mod_thread;
  pthread_t write_thread;
  err = pthread_create(&mod_thread, NULL, modifier, &race);
  if (err != 0) {
    fprintf(stderr, "dio_race: pthread_create: %s\n", strerror(err));
    free(mem);
    close(fd);
    return k_exit_error;
  }
  err = pthread_create(&write_thread, NULL, writer, &race);
  if (err != 0) {
    fprintf(stderr, "dio_race: pthread_create: %s\n", strerror(err));
    atomic_store(&race.stop, true);
    pthread_join(mod_thread, NULL);
    free(mem);
    close(fd);
    return k_exit_error;
  }
  pthread_join(write_thread, NULL);
  atomic_store(&race.stop, true);
  pthread_join(mod_thread, NULL);
  free(mem);

  int status = 0;
  if (race.write_errno > 0) {
    fprintf(stderr, "dio_race: pwrite %s at offset %llu: %s\n", path,
            (unsigned long long)race.written, strerror(race.write_errno));
    status = k_exit_error;
  } else if (race.write_errno < 0) {
    fprintf(stderr, "dio_race: pwrite %s: short write, %llu of %llu bytes written\n", path,
            (unsigned long long)race.written, (unsigned long long)size);
    status = k_exit_error;
  }
  if (fsync(fd) != 0) {
    fprintf(stderr, "dio_race: fsync %s: %s\n", path, strerror(errno));
    status = k_exit_error;
  }
  if (close(fd) != 0) {
    fprintf(stderr, "dio_race: close %s: %s\n", path, strerror(errno));
    status = k_exit_error;
  }
  if (status == 0) {
    printf("dio_race: %s: wrote %llu bytes in %llu-byte O_DIRECT writes%s, %llu buffer "
           "modifications\n",
           path, (unsigned long long)race.written, (unsigned long long)block,
           nocow_first ? " (NOCOW)" : "", (unsigned long long)race.modifications);
  }
  return status;
}
