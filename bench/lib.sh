# shellcheck shell=bash
# What the benchmarks share: requirements, a btrfs on a loop device that is cleaned up on exit,
# cold caches, timing. Source it, then:
#   bench_require CMD...           exit 77 (skip) unless root and every command is there
#   bench_loop_btrfs MIB PROFILE [--direct-io]
#                                  mkfs.btrfs -d/-m PROFILE on a new loop device, mounted at
#                                  $BENCH_MNT ($BENCH_LOOP is the device); removed on exit.
#                                  PROFILE DATA/METADATA gives each its own (single/dup), - keeps
#                                  mkfs's defaults; --direct-io: the loop device does direct I/O
#                                  to its backing file
#   bench_workdir [DIR]            a new directory $BENCH_WORK in DIR (default $BENCH_MNT),
#                                  removed with all it holds on exit
#   bench_cold                     sync and drop the page cache
#   bench_now                      seconds since the epoch, with nanoseconds
#   bench_busy_cpu                 CPU seconds all cores spent busy since boot (/proc/stat)
#   bench_median                   the median of the numbers on stdin
#   bench_dev_read DEV             bytes read from block device DEV since boot (its /sys stat:
#                                  the device's own count, whatever the reader)
#   bench_dev_reads DEV            read requests block device DEV completed since boot (its /sys
#                                  stat)
#   bench_data_used MNT            bytes of data extents allocated on the btrfs at MNT (btrfs
#                                  filesystem df: whole extents, overwritten parts included)
#   bench_loop_btrfs_devs N MIB PROFILE [--direct-io]
#                                  like bench_loop_btrfs over N loop devices of MIB each
#                                  ($BENCH_LOOPS lists them, $BENCH_LOOP is the first)
#   bench_stats LABEL UNIT V...    one line: LABEL min/median/max of the values (n runs), and a
#                                  second line when the runs differ by more than 15%
# $VMCSUM is the binary under test (default build/vmcsum), $BENCH_TMP a scratch directory.
# $BENCH_BACKING (optional): a directory for the loop devices' backing files instead of
# $BENCH_TMP, e.g. /dev/shm: devices in memory, faster than the cores hash, where the CPU is the
# bound to measure against (the loop device's worker then copies every block read: CPU time).
set -euo pipefail
BENCH_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VMCSUM=${VMCSUM:-$BENCH_HERE/build/vmcsum}
PATH=$PATH:/usr/sbin:/sbin
BENCH_TMP=$(mktemp -d /tmp/vmcsum-bench.XXXXXX)
BENCH_LOOP=""
BENCH_MNT=""
BENCH_WORK=""
BENCH_LOOPS=()
BENCH_BACKING_DIR=$BENCH_TMP

_bench_cleanup() {
  set +e
  [[ -n $BENCH_WORK ]] && rm -rf "$BENCH_WORK"
  [[ -n $BENCH_MNT ]] && mountpoint -q "$BENCH_MNT" && umount "$BENCH_MNT"
  [[ -n $BENCH_LOOP ]] && losetup -d "$BENCH_LOOP"
  local l
  for l in "${BENCH_LOOPS[@]:1}"; do losetup -d "$l"; done
  rm -rf "$BENCH_TMP" "$BENCH_BACKING_DIR"
}
trap _bench_cleanup EXIT INT TERM
# Made once the cleanup is set: a BENCH_BACKING that does not exist leaves nothing behind.
if [[ -n ${BENCH_BACKING-} ]]; then
  BENCH_BACKING_DIR=$(mktemp -d "$BENCH_BACKING/vmcsum-bench.XXXXXX")
fi

bench_require() {
  [[ $(id -u) -eq 0 ]] || { echo "bench: needs root (loop devices, drop_caches)" >&2; exit 77; }
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || { echo "bench: $c not found" >&2; exit 77; }
  done
  [[ -x $VMCSUM ]] || { echo "bench: $VMCSUM not built (set VMCSUM)" >&2; exit 77; }
}

bench_loop_btrfs() {
  local mib=$1 profile=$2 direct=() profiles=()
  [[ ${3-} == --direct-io ]] && direct=(--direct-io=on)
  [[ $profile != - ]] && profiles=(-d "${profile%/*}" -m "${profile#*/}")
  truncate -s "${mib}M" "$BENCH_BACKING_DIR/fs.img"
  BENCH_LOOP=$(losetup -f --show "${direct[@]}" "$BENCH_BACKING_DIR/fs.img")
  mkfs.btrfs -q -f "${profiles[@]}" "$BENCH_LOOP" >/dev/null
  BENCH_MNT=$BENCH_TMP/mnt
  mkdir -p "$BENCH_MNT"
  mount "$BENCH_LOOP" "$BENCH_MNT"
}

bench_workdir() { BENCH_WORK=$(mktemp -d "${1:-$BENCH_MNT}/vmcsum-bench.XXXXXX"); }

bench_cold() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

bench_now() { date +%s.%N; }

# The CPU time (seconds) every core of the machine spent busy since boot: user, nice, system,
# irq, softirq and steal of /proc/stat's cpu line (idle and iowait left out), in USER_HZ ticks
# (proc(5)). Whatever runs, the kernel's own threads too (a loop device's worker).
bench_busy_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

bench_median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# Field 3 of /sys/block/NAME/stat: sectors read, in units of 512 bytes whatever the sector size
# (Documentation/block/stat.rst).
bench_dev_read() { echo $(($(awk '{ print $3 }' "/sys/class/block/${1##*/}/stat") * 512)); }
bench_dev_reads() { awk '{ print $1 }' "/sys/class/block/${1##*/}/stat"; }

bench_data_used() {
  sync
  btrfs filesystem df -b "$1" | awk -F'used=' '/^Data/ { sum += $2 } END { printf "%.0f\n", sum }'
}

bench_loop_btrfs_devs() {
  local n=$1 mib=$2 profile=$3 direct=() i
  [[ ${4-} == --direct-io ]] && direct=(--direct-io=on)
  for ((i = 0; i < n; i++)); do
    truncate -s "${mib}M" "$BENCH_BACKING_DIR/fs$i.img"
    BENCH_LOOPS+=("$(losetup -f --show "${direct[@]}" "$BENCH_BACKING_DIR/fs$i.img")")
    BENCH_LOOP=${BENCH_LOOPS[0]}
  done
  mkfs.btrfs -q -f -d "${profile%/*}" -m "${profile#*/}" "${BENCH_LOOPS[@]}" >/dev/null
  BENCH_MNT=$BENCH_TMP/mnt
  mkdir -p "$BENCH_MNT"
  mount "$BENCH_LOOP" "$BENCH_MNT"
}

bench_stats() {
  local label=$1 unit=$2
  shift 2
  printf '%s\n' "$@" | sort -g | awk -v l="$label" -v u="$unit" '{ a[NR] = $1 } END {
    med = a[int((NR + 1) / 2)]
    printf "%s: min %.2f / median %.2f / max %.2f %s (%d runs)\n", l, a[1], med, a[NR], u, NR
    if (a[1] > 0 && a[NR] / a[1] > 1.15)
      printf "  note: %s runs differ by %.0f%% (> 15%%): noisy machine, read the median\n", l, (a[NR] / a[1] - 1) * 100
  }'
}
