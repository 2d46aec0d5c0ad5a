#!/usr/bin/env bash
# Runs the integration tests several times in a row while other work loads the machine the way a
# shared host does: CPU burners, and a neighbour that keeps making, damaging, reading (so the
# kernel logs checksum failures and ratelimits its log) and tearing down btrfs filesystems on loop
# devices of its own. A test that passes only on a quiet machine fails here.
#   scripts/soak.sh [RUNS] [CTEST-REGEX]     default: 5 runs of every integration test
# Needs root and a build in build/ (scripts/setup.sh; SOAK_BUILD=DIR for another build directory,
# so two soaks can run side by side). Prints "N passed, N failed" (runs).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-5}
regex=${2:-}
build=${SOAK_BUILD:-$here/build}
[[ $(id -u) -eq 0 ]] || { echo "soak: needs root (loop devices)" >&2; exit 77; }
[[ -x $build/vmcsum ]] || { echo "soak: no $build/vmcsum; run scripts/setup.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/vmcsum-soak.XXXXXX)
pids=()
loops=()
neighbour=""
ctest_pid=""
# The running tests are asked to stop (TERM: their harness unmounts and detaches what they made)
# and waited for, up to a minute. ctest runs in a session of its own, so a signal to this
# script's process group reaches the tests only this way, and their cleanup has its chance:
# killed together with ctest, a test left its mounts and loop devices behind.
stop_tests() {
  [[ -n $ctest_pid ]] || return 0
  local kids k t alive
  # ctest is stopped first (left running, it would start the next test as soon as this one
  # ends) but not killed until its tests are done: they write to its pipe, and a test whose
  # reader is gone dies of SIGPIPE in its cleanup (seen: 4 mounts and 7 loop devices left). A
  # test that ended is a zombie until ctest, stopped, reaps it.
  kill -STOP "$ctest_pid" 2>/dev/null || true
  kids=$(pgrep -P "$ctest_pid" || true)
  for k in $kids; do kill -TERM "$k" 2>/dev/null || true; done
  for ((t = 0; t < 600; t++)); do
    alive=0
    for k in $kids; do
      [[ $(awk '{ print $3 }' "/proc/$k/stat" 2>/dev/null || echo X) == [ZX] ]] || alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  kill -KILL "$ctest_pid" 2>/dev/null || true
  wait "$ctest_pid" 2>/dev/null || true
  ctest_pid=""
  echo "soak: stopped during run $r" >&2
  keep_log "$r"
}
# keep_log RUN : copies the run's log out of $work (removed on exit) and says where.
keep_log() {
  local kept
  kept=/tmp/$(basename -- "$work")-run$1.log
  [[ -e $work/run$1.log ]] && cp -- "$work/run$1.log" "$kept" && echo "(log kept in $kept)"
  return 0
}
cleaned=0
cleanup() {
  ((cleaned)) && return 0
  cleaned=1
  stop_tests
  local p i
  # The neighbour runs in a process group of its own: its mount, dd or cat goes with it (killed
  # alone, the loop left one running on the filesystem, whose umount then failed as busy: a
  # mount and its loop device stayed after a soak).
  [[ -z $neighbour ]] || kill -- "-$neighbour" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    mountpoint -q "$work/mnt" 2>/dev/null || break
    umount "$work/mnt" 2>/dev/null || sleep 0.5
  done
  ! mountpoint -q "$work/mnt" 2>/dev/null || umount -l "$work/mnt" || true
  for p in "${loops[@]}"; do losetup -d "$p" 2>/dev/null || true; done
  rm -rf -- "$work"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# CPU: one busy loop per core, at low priority so the tests still make progress.
for ((i = 0; i < $(nproc); i++)); do
  nice -n 10 sh -c 'while :; do :; done' &
  pids+=($!)
done

# The neighbour: its own loop device, a btrfs on it, a damaged file read through the kernel (csum
# failures in the log, corruption counters), then unmounted; over and over.
truncate -s 256M "$work/neighbour.img"
dev=$(losetup -f --show "$work/neighbour.img")
loops+=("$dev")
mkdir -p "$work/mnt"
set -m # the neighbour in a process group of its own (cleanup kills the whole group)
(
  while :; do
    mkfs.btrfs -q -f -d single -m single "$dev" >/dev/null 2>&1 || break
    mount "$dev" "$work/mnt" || break
    dd if=/dev/urandom of="$work/mnt/f" bs=1M count=4 status=none
    sync
    logical=$(filefrag -v -b4096 "$work/mnt/f" | awk '/^ *0:/ { gsub(/[.:]/, " "); print $4 * 4096; exit }')
    umount "$work/mnt"
    if [[ -n $logical ]]; then
      phys=$(btrfs-map-logical -l "$logical" -b 4096 "$dev" 2>/dev/null | awk '/mirror 1/ {print $6; exit}')
      [[ -n $phys ]] && dd if=/dev/urandom of="$dev" bs=4096 count=8 seek=$((phys / 4096)) \
        oflag=direct conv=notrunc status=none
    fi
    mount "$dev" "$work/mnt" || break
    cat "$work/mnt/f" >/dev/null 2>&1 || true
    umount "$work/mnt"
  done
) >/dev/null 2>&1 &
neighbour=$!
set +m

passed=0 failed=0
for ((r = 1; r <= runs; r++)); do
  echo "=== soak run $r of $runs ($(date -u +%H:%M:%S))"
  args=(--test-dir "$build" --output-on-failure -L integration)
  [[ -n $regex ]] && args+=(-R "$regex")
  setsid ctest "${args[@]}" >"$work/run$r.log" 2>&1 &
  ctest_pid=$!
  rc=0
  wait "$ctest_pid" || rc=$?
  ctest_pid=""
  if ((rc == 0)); then
    passed=$((passed + 1))
    tail -n 3 "$work/run$r.log" | head -n 1
  else
    failed=$((failed + 1))
    grep -aE '^(FAIL|not ok)|\*\*\*Failed|Timeout' "$work/run$r.log" | head -n 40
    keep_log "$r"
  fi
done
echo "soak: $passed passed, $failed failed"
((failed == 0))
