// SPDX-License-Identifier: GPL-2.0-or-later
// Copyright (C) 2026 The vmcsum authors
//
// swap_on_open --count DIR: counts the inotify events on DIR (anything opened, read, listed,
// changed in it), prints the count when terminated: the proof that a program never touched DIR.
//
// swap_on_open --exchange DIR A B: one exchange, now (the test puts its tree back with it).
//
// swap_on_open DIR A B [COUNT]: every time something in DIR is opened or read (inotify
// IN_OPEN/IN_ACCESS on DIR), exchanges the entries DIR/A and DIR/B atomically with
// renameat2(RENAME_EXCHANGE), COUNT times (default: until killed). A test makes B a symlink to a
// directory outside the tree under test, or a FIFO, and checks that the program walking DIR never
// reads through it: the swap lands exactly between that program's listing and its open, which a
// sleep-based race would only hit by luck. Prints the number of swaps done on exit (SIGTERM).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_term(int sig)
{
  (void)sig;
  g_stop = 1;
}

static int count_events(const char* dir)
{
  int in = inotify_init1(IN_CLOEXEC);
  if (in < 0 || inotify_add_watch(in, dir, IN_ALL_EVENTS) < 0) {
    perror(dir);
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  long events = 0;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  while (!g_stop) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      perror("inotify read");
      return 1;
    }
    for (char* p = buf; p < buf + n;) {
      const struct inotify_event* ev = (const struct inotify_event*)p;
      fprintf(stderr, "event 0x%x %s\n", ev->mask, ev->len ? ev->name : ".");
      ++events;
      p += sizeof *ev + ev->len;
    }
  }
  printf("%ld\n", events);
  return 0;
}

int main(int argc, char** argv)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term; // no SA_RESTART: read() returns EINTR and the loop ends
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (argc == 3 && strcmp(argv[1], "--count") == 0) {
    return count_events(argv[2]);
  }
  if (argc == 5 && strcmp(argv[1], "--exchange") == 0) {
    int d = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0 || syscall(SYS_renameat2, d, argv[3], d, argv[4], RENAME_EXCHANGE) < 0) {
      perror(argv[2]);
      return 1;
    }
    return 0;
  }
  if (argc < 4) {
    fprintf(stderr, "usage: %s DIR A B [COUNT]\n", argv[0]);
    return 2;
  }
  const long limit = argc > 4 ? atol(argv[4]) : -1;
  int dfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int in = inotify_init1(IN_CLOEXEC);
  if (dfd < 0 || in < 0 || inotify_add_watch(in, argv[1], IN_OPEN | IN_ACCESS) < 0) {
    perror(argv[1]);
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  long swaps = 0;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  while (!g_stop && (limit < 0 || swaps < limit)) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      perror("inotify read");
      return 1;
    }
    // One exchange per batch of events: each batch means someone touched the directory.
    if (syscall(SYS_renameat2, dfd, argv[2], dfd, argv[3], RENAME_EXCHANGE) == 0) {
      ++swaps;
    }
  }
  printf("%ld\n", swaps);
  return 0;
}
