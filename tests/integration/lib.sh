# shellcheck shell=bash disable=SC2034
# (SC2034: MNT, DEVS, IMGS, LAST_GARBAGE... are set here for the sourcing test to read.)
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 The vmcsum authors
#
# Integration-test harness: source it from a test script that runs under `set -euo pipefail`.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   need_root; need_loop; need_cmd jq
#   make_btrfs -d dup -m dup --csum xxhash         # sets MNT, DEVS, IMGS, FS_ID
#   check "vmcsum show succeeds" "$VMCSUM" show "$MNT"
#   finish                                          # "<name>: N passed, N failed"
#
# Exit codes: 0 all checks passed, 1 a check failed (or none ran, or the script aborted),
# 77 skipped (ctest SKIP_RETURN_CODE; the script prints "SKIP: reason" first).
#
# Everything the harness creates lives in one per-test temp dir ($IT_TMP). An EXIT/INT/TERM/HUP
# trap unmounts what it mounted, detaches exactly the loop devices it attached, kills the
# processes registered with bg_track and removes $IT_TMP. The unmounting, detaching and removing
# run in a process group of their own: a signal to the test's group (a terminal's Ctrl-C,
# timeout(1), ctest) does not stop them half way. Loop devices and mounts are shared with
# everything else on the machine, so nothing here acts on a device, mount or process it did not
# create.
#
# Caveats:
#  * Call make_btrfs, damage_sectors, mount_btrfs... in the test's own shell, never inside $(...):
#    they set globals the cleanup relies on.
#  * bash delays a trapped signal until the foreground command ends. Run long waits as
#    `cmd & bg_track $!; wait $!` so that TERM/HUP interrupt them at once.
#  * Do not set your own EXIT/INT/TERM/HUP trap: it would replace the harness's. Register
#    processes with bg_track; call it_cleanup early if the test must check what is left.
#  * drop_caches is machine-wide (there is no per-filesystem way to drop clean pages).
#  * A non-interactive shell that starts a script in the background makes it ignore SIGINT (POSIX);
#    the INT trap only matters for interactive runs (Ctrl-C reaches the whole process group).

if [[ -n ${_VMCSUM_IT_LIB_LOADED:-} ]]; then
  return 0
fi
_VMCSUM_IT_LIB_LOADED=1

# mkfs.btrfs, losetup, blockdev... live in sbin, which a non-login PATH may lack.
for _it_d in /usr/local/sbin /usr/sbin /sbin; do
  [[ :$PATH: == *":$_it_d:"* ]] || PATH=$PATH:$_it_d
done
unset _it_d

# --- globals --------------------------------------------------------------------------------------
IT_NAME=${IT_NAME:-$(basename -- "${0%.sh}")} # test name used in the summary line
IT_SECTOR=4096                                # btrfs sectorsize assumed by the damage fixture
IT_PASS=0
IT_FAIL=0
IT_SKIPPED=0
IT_FINISHED=0
IT_CLEANED=0
IT_EXITING=0
IT_CLEANUP_ERRORS=()
IT_LAST_ERR=""
MNT=""       # mount point of the filesystem made last by make_btrfs
DEVS=()      # its loop devices, in mkfs order
IMGS=()      # their sparse backing files
FS_ID=""     # its harness id (accepted by mount_btrfs/unmount_btrfs/remount_btrfs like a mount point)
LAST_GARBAGE=""  # file with the bytes the last damage_sectors call wrote (COUNT*4096 bytes)
DAMAGED=()       # logical addresses of the sectors the last damage_sectors call overwrote

_IT_LOOPS=()   # every loop device this test attached
_IT_IMAGES=()  # every backing file this test created
_IT_MOUNTS=()  # every mount point this test mounted
_IT_BG_PIDS=() # processes registered with bg_track
_IT_FS_COUNT=0
declare -A _IT_FS_MNT=() _IT_FS_DEVS=() _IT_FS_IMGS=() _IT_FS_OPTS=() _IT_MNT2ID=()

IT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmcsum-it.${IT_NAME//[^A-Za-z0-9_.-]/_}.XXXXXX")
# vmcsum's records (kernel record, scrub outcomes) stay with the test, never in the host's
# /var/lib/vmcsum: a test must not see another's, nor leave its own behind.
export VMCSUM_STATE_DIR="$IT_TMP/state"

# --- output and assertions ------------------------------------------------------------------------
note() { printf '# %s\n' "$*" >&2; }
_it_indent() { sed 's/^/#   /' >&2; }

_it_ok() {
  IT_PASS=$((IT_PASS + 1))
  printf 'ok - %s\n' "$1"
}

_it_not_ok() {
  IT_FAIL=$((IT_FAIL + 1))
  printf 'FAIL - %s\n' "$1"
}

_it_oneline() {
  local s=$1
  s=${s//$'\n'/\\n}
  printf '%s' "$s"
}

# Prints captured command output indented as a diagnostic (last 30 lines).
_it_show_output() {
  [[ -s $1 ]] || return 0
  tail -n 30 -- "$1" | sed 's/^/#   /'
}

_it_capture_file() {
  _IT_CHECK_SEQ=$((${_IT_CHECK_SEQ:-0} + 1))
  if [[ -d $IT_TMP ]]; then
    printf '%s/.check.%d.out' "$IT_TMP" "$_IT_CHECK_SEQ"
  else
    mktemp "${TMPDIR:-/tmp}/vmcsum-it.check.XXXXXX"
  fi
}

# check DESC CMD... : passes when CMD exits 0. CMD runs in this shell (it may set globals);
# its output is captured and shown only on failure.
check() {
  local desc=$1 out rc=0
  shift
  out=$(_it_capture_file)
  "$@" >"$out" 2>&1 || rc=$?
  if ((rc == 0)); then
    _it_ok "$desc"
  else
    _it_not_ok "$desc (exit status $rc: $(_it_oneline "$*"))"
    _it_show_output "$out"
  fi
  rm -f -- "$out"
  return 0
}

# check_fails DESC CMD... : passes when CMD exits non-zero.
check_fails() {
  local desc=$1 out rc=0
  shift
  out=$(_it_capture_file)
  "$@" >"$out" 2>&1 || rc=$?
  if ((rc != 0)); then
    _it_ok "$desc"
  else
    _it_not_ok "$desc (expected failure, got exit status 0: $(_it_oneline "$*"))"
    _it_show_output "$out"
  fi
  rm -f -- "$out"
  return 0
}

# check_eq DESC EXPECTED ACTUAL : string equality.
check_eq() {
  if [[ $2 == "$3" ]]; then
    _it_ok "$1"
  else
    _it_not_ok "$1 (expected $(_it_oneline "$2"), got $(_it_oneline "$3"))"
  fi
  return 0
}

# check_schema NAME JSON... : validates vmcsum --json documents against tests/schema/NAME.json
# (JSON Schema, python3-jsonschema); NAME --by-name: each against the schema its own "schema" key
# names, empty files left out. Without python3-jsonschema it says so and checks nothing.
check_schema() {
  local name=$1 py dir f
  shift
  dir=${VMCSUM_SRC:-$(dirname "${BASH_SOURCE[0]}")/../..}/tests/schema
  for py in python3 /usr/bin/python3 ""; do
    [[ -n $py ]] && "$py" -c 'import jsonschema' >/dev/null 2>&1 && break
  done
  if [[ -z $py ]]; then
    note "SKIP schema check $name: python3-jsonschema (Debian package python3-jsonschema) is not installed"
    return 0
  fi
  if [[ $name == --by-name ]]; then
    local -a docs=()
    for f in "$@"; do
      [[ -s $f ]] && docs+=("$f")
    done
    if ((${#docs[@]} == 0)); then
      note "check_schema: no JSON document to validate"
      return 0
    fi
    check "${#docs[@]} document(s) valid against the tests/schema/ file each names" \
      "$py" "$dir/validate.py" --by-name "${docs[@]}"
    return 0
  fi
  check "$# document(s) valid against tests/schema/$name.json" \
    "$py" "$dir/validate.py" "$dir/$name.json" "$@"
}

# keep_json_documents : makes VMCSUM a wrapper that execs the real binary (same pid, status and
# signals) and, when --json is among its arguments, keeps a copy of its stdout in
# $IT_TMP/json-docs/, so that `check_schema --by-name "$IT_TMP"/json-docs/*` before finish
# validates every document the test made. Not for runs as another user ($IT_TMP is root's).
keep_json_documents() {
  local real=$VMCSUM w=$IT_TMP/vmcsum-keep-json
  mkdir -p -- "$IT_TMP/json-docs"
  cat >"$w" <<EOF
#!/usr/bin/env bash
for a in "\$@"; do
  if [[ \$a == --json ]]; then
    exec > >(exec tee -- "$IT_TMP/json-docs/\$\$.\$RANDOM.json")
    break
  fi
done
exec $(printf %q "$real") "\$@"
EOF
  chmod +x -- "$w"
  VMCSUM_REAL=$real # the binary itself, for a run that may not fork (the wrapper's tee does)
  VMCSUM=$w
}

# one_task_cgroup : makes a pids cgroup that allows one task (cgroup v1's pids hierarchy, or v2
# where the pids controller is enabled for children) and sets ONE_TASK_CG to it: a command run in
# it (in_one_task) can start no thread, as under a pids.max or RLIMIT_NPROC that is reached.
# Fails, ONE_TASK_CG empty, when none can be made here. it_cleanup removes it.
ONE_TASK_CG=""
ONE_TASK=()
one_task_cgroup() {
  local cg=""
  if [[ -w /sys/fs/cgroup/pids && -d /sys/fs/cgroup/pids ]]; then
    cg=/sys/fs/cgroup/pids/vmcsum-it-$$-$RANDOM
  elif grep -qw pids /sys/fs/cgroup/cgroup.controllers 2>/dev/null &&
    grep -qw pids /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
    cg=/sys/fs/cgroup/vmcsum-it-$$-$RANDOM
  fi
  [[ -n $cg ]] && mkdir "$cg" 2>/dev/null || return 1
  if ! echo 1 >"$cg/pids.max"; then
    rmdir "$cg" 2>/dev/null
    return 1
  fi
  ONE_TASK_CG=$cg
  # A command prefix (for timeout(1) and the like) that runs what follows in the cgroup. No leak
  # check under LeakSanitizer: it stops the world with a thread of its own.
  ONE_TASK=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg")
}
# task_limit N : lets ONE_TASK_CG hold N tasks (threads count: N - 1 of them) from now on.
task_limit() { echo "$1" >"$ONE_TASK_CG/pids.max"; }
# in_one_task COMMAND... : COMMAND (no shell function) as the only task ONE_TASK_CG allows; for
# vmcsum, "${VMCSUM_REAL:-$VMCSUM}" (keep_json_documents's wrapper forks).
in_one_task() { "${ONE_TASK[@]}" "$@"; }
# one_task_refused : how many forks (threads included) ONE_TASK_CG refused so far (pids.events).
one_task_refused() {
  awk '$1 == "max" { print $2 }' "$ONE_TASK_CG/pids.events" 2>/dev/null || echo 0
}

# finish : runs the cleanup, prints "<test name>: N passed, N failed" as the last line and exits
# 1 if anything failed (a cleanup failure and running no check at all count as failures), else 0.
finish() {
  if ((IT_PASS + IT_FAIL == 0)); then
    _it_not_ok "finish: no checks ran (a test that asserts nothing does not pass)"
  fi
  it_cleanup
  local e
  for e in "${IT_CLEANUP_ERRORS[@]}"; do
    _it_not_ok "cleanup: $e"
  done
  IT_CLEANUP_ERRORS=()
  IT_FINISHED=1
  printf '%s: %d passed, %d failed\n' "$IT_NAME" "$IT_PASS" "$IT_FAIL"
  if ((IT_FAIL > 0)); then
    exit 1
  fi
  exit 0
}

# --- skips ----------------------------------------------------------------------------------------
# skip REASON : prints "SKIP: REASON" and exits 77. If checks already ran, it finishes instead
# (exit 0 or 1 by their outcome): 77 means that nothing ran.
skip() {
  printf 'SKIP: %s\n' "$*"
  if ((IT_PASS + IT_FAIL > 0)); then
    finish
  fi
  IT_SKIPPED=1
  exit 77
}

need_root() {
  [[ $(id -u) -eq 0 ]] || skip "must run as root (loop devices, mount, mkfs.btrfs)"
}

# need_cmd CMD... : skips unless every CMD is on PATH (sbin directories included).
need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || skip "command not found: $c"
  done
}

# need_btrfs : skips unless the kernel has btrfs (built in, or loadable with modprobe).
need_btrfs() {
  grep -qw btrfs /proc/filesystems 2>/dev/null && return 0
  modprobe btrfs >/dev/null 2>&1 || true
  grep -qw btrfs /proc/filesystems 2>/dev/null || skip "kernel has no btrfs support (not in /proc/filesystems, modprobe btrfs failed)"
}

# need_loop : skips unless loop devices can be attached and btrfs is available.
need_loop() {
  need_root
  need_cmd losetup mount umount mkfs.btrfs btrfs
  if [[ ! -e /dev/loop-control ]]; then
    modprobe loop >/dev/null 2>&1 || true
  fi
  [[ -e /dev/loop-control ]] || skip "no /dev/loop-control (loop driver missing)"
  losetup -f >/dev/null 2>&1 || skip "no free loop device (losetup -f failed)"
  need_btrfs
}

# --- background processes -------------------------------------------------------------------------
# _it_starttime PID : sets _IT_START to PID's start time (field 22 of /proc/PID/stat), "" when it
# is gone. Builtins only, no subshell: the cleanup calls it while a terminal's Ctrl-C may signal
# every process of the group (and a command substitution is one).
_IT_START=""
_it_starttime() {
  local st=""
  read -r -d '' st 2>/dev/null <"/proc/$1/stat" || true # no NUL in it: "fails" at its end
  _IT_START="" _IT_STATE=""
  [[ -n $st ]] || return 0
  st=${st##*) } # comm may contain spaces and parentheses
  local -a fields
  read -r -a fields <<<"$st"
  _IT_START=${fields[19]-} _IT_STATE=${fields[0]-}
}

# bg_track PID... : the cleanup kills these processes (TERM, then KILL after 3 s). A process is
# identified by pid and start time, so a pid the kernel has since reused is never killed.
bg_track() {
  local p
  for p in "$@"; do
    [[ $p =~ ^[0-9]+$ ]] || {
      note "bg_track: not a pid: $p"
      return 1
    }
    _it_starttime "$p"
    [[ -n $_IT_START ]] || continue # already gone
    _IT_BG_PIDS+=("$p:$_IT_START")
  done
}

# bg_untrack PID... : forget processes the test has waited for itself.
bg_untrack() {
  local p e
  local -a keep=()
  for e in "${_IT_BG_PIDS[@]}"; do
    for p in "$@"; do
      [[ ${e%%:*} == "$p" ]] && continue 2
    done
    keep+=("$e")
  done
  _IT_BG_PIDS=("${keep[@]}")
}

# --- filesystems ----------------------------------------------------------------------------------
_it_losetup() {
  local img=$1 dev try
  for try in 1 2 3 4 5; do
    # -f --show: the kernel picks a free device and we learn which one; retried because another
    # process may grab the same free device between lookup and attach.
    if dev=$(losetup -f --show -- "$img" 2>"$IT_TMP/.losetup.err"); then
      printf '%s\n' "$dev"
      return 0
    fi
    sleep "0.$try"
  done
  cat "$IT_TMP/.losetup.err" >&2
  return 1
}

# Resolves a mount point or fs id to the harness fs id (default: the last filesystem made).
_it_fs_id() {
  local key=${1:-${FS_ID:-}}
  if [[ -n $key && -n ${_IT_FS_MNT[$key]+set} ]]; then
    printf '%s\n' "$key"
  elif [[ -n $key && -n ${_IT_MNT2ID[$key]+set} ]]; then
    printf '%s\n' "${_IT_MNT2ID[$key]}"
  else
    note "not a filesystem made by make_btrfs: ${key:-<none>}"
    return 1
  fi
}

_it_mount_opts() {
  local id=$1 o=${_IT_FS_OPTS[$1]} d
  local -a devs
  read -r -a devs <<<"${_IT_FS_DEVS[$id]}"
  # Name every device so a multi-device fs mounts without relying on udev having scanned them.
  if ((${#devs[@]} > 1)); then
    for d in "${devs[@]:1}"; do
      o=${o:+$o,}device=$d
    done
  fi
  printf '%s' "$o"
}

_it_flushbufs() {
  local d
  for d in "$@"; do
    blockdev --flushbufs "$d" >/dev/null 2>&1 || true
  done
}

# mount_btrfs [MNT|FS_ID] : mounts a filesystem made by make_btrfs again (same options).
mount_btrfs() {
  local id mnt opts
  id=$(_it_fs_id "${1:-}") || return 1
  mnt=${_IT_FS_MNT[$id]}
  mountpoint -q -- "$mnt" && return 0
  opts=$(_it_mount_opts "$id")
  local -a devs
  read -r -a devs <<<"${_IT_FS_DEVS[$id]}"
  _it_flushbufs "${devs[@]}"
  if ((${#devs[@]} > 1)); then
    btrfs device scan -- "${devs[@]}" >/dev/null 2>&1 || true
  fi
  mount -t btrfs ${opts:+-o "$opts"} -- "${devs[0]}" "$mnt" || {
    note "mount -t btrfs ${opts:+-o $opts} ${devs[0]} $mnt failed"
    return 1
  }
}

# unmount_btrfs [MNT|FS_ID] : syncs and unmounts (no lazy fallback: offline tools need a real
# unmount), then drops the loop devices' buffer cache so offline tools read what is on disk.
unmount_btrfs() {
  local id mnt try
  id=$(_it_fs_id "${1:-}") || return 1
  mnt=${_IT_FS_MNT[$id]}
  local -a devs
  read -r -a devs <<<"${_IT_FS_DEVS[$id]}"
  if mountpoint -q -- "$mnt"; then
    sync -f -- "$mnt" 2>/dev/null || sync
    for try in 1 2 3 4 5 6; do
      umount -- "$mnt" 2>/dev/null && break
      sleep "0.$try"
    done
    if mountpoint -q -- "$mnt"; then
      umount -- "$mnt" # shows the error
      return 1
    fi
  fi
  _it_flushbufs "${devs[@]}"
}

# remount_btrfs [MNT|FS_ID] : umount + mount again with the same options.
remount_btrfs() {
  unmount_btrfs "$@" && mount_btrfs "$@"
}

# drop_caches : writes back and drops the page cache, dentries and inodes (machine-wide).
# kmsg_mark; dmesg_since : dmesg keeps the lines of earlier filesystems on a loop device (an
# earlier run, another test: same device name, same inode numbers), which vmcsum rightly leaves
# out. kmsg_mark writes a mark to the kernel log; dmesg_since prints dmesg from it on (all of
# dmesg if the mark rotated out of the ring).
kmsg_mark() {
  _IT_KMSG_MARK="vmcsum-it-$(basename -- "$0" .sh)-$$-$RANDOM"
  echo "$_IT_KMSG_MARK" >/dev/kmsg
}
dmesg_since() {
  dmesg | awk -v m="${_IT_KMSG_MARK:?kmsg_mark first}" 'f; index($0, m) { f = 1 } END { exit !f }' || dmesg
}

drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

# make_btrfs [--devices N] [--size MiB] [--mount-opts OPTS] [--] [mkfs.btrfs args...]
# Creates N sparse backing files of MiB each (default 1 x 256) in $IT_TMP, attaches each with
# `losetup -f --show`, runs `mkfs.btrfs -f -q ARGS DEVS...` and mounts the first device with OPTS.
# Sets MNT, DEVS, IMGS and FS_ID; may be called several times per test.
make_btrfs() {
  local ndev=1 size=256 mopts=""
  while (($#)); do
    case $1 in
      --devices) ndev=$2; shift 2 ;;
      --devices=*) ndev=${1#*=}; shift ;;
      --size) size=$2; shift 2 ;;
      --size=*) size=${1#*=}; shift ;;
      --mount-opts) mopts=$2; shift 2 ;;
      --mount-opts=*) mopts=${1#*=}; shift ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  [[ $ndev =~ ^[1-9][0-9]*$ && $size =~ ^[1-9][0-9]*$ ]] || {
    note "make_btrfs: bad --devices '$ndev' or --size '$size'"
    return 1
  }
  need_cmd mkfs.btrfs losetup truncate mountpoint blockdev

  _IT_FS_COUNT=$((_IT_FS_COUNT + 1))
  local id=fs$_IT_FS_COUNT
  local dir=$IT_TMP/$id i img dev
  mkdir -p -- "$dir/mnt"
  local -a devs=() imgs=()
  for ((i = 1; i <= ndev; i++)); do
    img=$dir/dev$i.img
    truncate -s "${size}M" -- "$img"
    _IT_IMAGES+=("$img")
    imgs+=("$img")
    dev=$(_it_losetup "$img") || return 1
    _IT_LOOPS+=("$dev")
    devs+=("$dev")
  done
  _IT_FS_MNT[$id]=$dir/mnt
  _IT_MNT2ID[$dir/mnt]=$id
  _IT_FS_DEVS[$id]="${devs[*]}"
  _IT_FS_IMGS[$id]="${imgs[*]}"
  _IT_FS_OPTS[$id]=$mopts

  if ! mkfs.btrfs -f -q "$@" "${devs[@]}" >"$dir/mkfs.log" 2>&1; then
    note "mkfs.btrfs -f -q $* ${devs[*]} failed:"
    _it_indent <"$dir/mkfs.log"
    return 1
  fi
  _IT_MOUNTS+=("$dir/mnt")
  mount_btrfs "$id" || return 1

  MNT=$dir/mnt
  DEVS=("${devs[@]}")
  IMGS=("${imgs[@]}")
  FS_ID=$id
}

# add_btrfs_device [MiB] : adds a new device (a sparse backing file of MiB, default 256, attached
# with `losetup -f --show`) to the filesystem made last (btrfs device add); the cleanup detaches
# it with the others. Sets ADDED_DEV and appends it to DEVS (not for a subshell: the cleanup's
# lists would not learn of it).
add_btrfs_device() {
  local size=${1:-256} id img dev
  id=$(_it_fs_id) || return 1
  img=$IT_TMP/$id/dev-added$((${#_IT_IMAGES[@]} + 1)).img
  truncate -s "${size}M" -- "$img"
  _IT_IMAGES+=("$img")
  dev=$(_it_losetup "$img") || return 1
  _IT_LOOPS+=("$dev")
  btrfs device add -f -- "$dev" "${_IT_FS_MNT[$id]}" >"$IT_TMP/.devadd.log" 2>&1 || {
    note "btrfs device add $dev failed:"
    _it_indent <"$IT_TMP/.devadd.log"
    return 1
  }
  _IT_FS_DEVS[$id]+=" $dev"
  _IT_FS_IMGS[$id]+=" $img"
  DEVS+=("$dev")
  IMGS+=("$img")
  ADDED_DEV=$dev
}

# libvirt_domain FILE NAME DISK CACHE : FILE holds a libvirt domain NAME with one raw file disk
# DISK opened with cache=CACHE.
libvirt_domain() {
  printf '%s\n' "<domain type='kvm'>" "  <name>$2</name>" "  <devices>" \
    "    <disk type='file' device='disk'>" "      <driver name='qemu' type='raw' cache='$4'/>" \
    "      <source file='$3'/>" "      <target dev='vda' bus='virtio'/>" "    </disk>" \
    "  </devices>" "</domain>" >"$1"
}

# adopt_btrfs [--mount-opts OPTS] IMG... : attaches images of a btrfs made elsewhere (a
# user-mode-linux guest's, in mkfs order) with `losetup -f --show` and mounts them (with OPTS) as
# make_btrfs would have: the cleanup unmounts and detaches them, and mount_btrfs/unmount_btrfs/
# damage_sectors work on them. Sets MNT, DEVS, IMGS and FS_ID. The images are not removed by the
# cleanup unless they lie in $IT_TMP.
adopt_btrfs() {
  local mopts=""
  if [[ ${1-} == --mount-opts ]]; then
    mopts=$2
    shift 2
  fi
  (($# > 0)) || {
    note "adopt_btrfs: usage: adopt_btrfs [--mount-opts OPTS] IMG..."
    return 1
  }
  local id img dev
  _IT_FS_COUNT=$((_IT_FS_COUNT + 1))
  id=fs$_IT_FS_COUNT
  mkdir -p -- "$IT_TMP/$id/mnt"
  local -a devs=() imgs=()
  for img in "$@"; do
    img=$(readlink -f -- "$img")
    _IT_IMAGES+=("$img")
    imgs+=("$img")
    dev=$(_it_losetup "$img") || return 1
    _IT_LOOPS+=("$dev")
    devs+=("$dev")
  done
  _IT_FS_MNT[$id]=$IT_TMP/$id/mnt
  _IT_MNT2ID[$IT_TMP/$id/mnt]=$id
  _IT_FS_DEVS[$id]="${devs[*]}"
  _IT_FS_IMGS[$id]="${imgs[*]}"
  _IT_FS_OPTS[$id]=$mopts
  _IT_MOUNTS+=("$IT_TMP/$id/mnt")
  mount_btrfs "$id" || return 1
  MNT=$IT_TMP/$id/mnt
  DEVS=("${devs[@]}")
  IMGS=("${imgs[@]}")
  FS_ID=$id
}

# make_fillable_btrfs PROFILE : a 512 MiB btrfs (data and metadata PROFILE) whose loop device's
# backing file lives on a 200 MiB tmpfs, FILL_DIR. Filling FILL_DIR makes the "disk" fail every
# new write: btrfs aborts its transaction and turns itself read-only, as on a failing disk.
# (`mount -o remount,ro` is refused, EBUSY, while a file is open for writing, and device-mapper
# is not on every test machine: docs/kernel-facts.md §3i.)
make_fillable_btrfs() {
  FILL_DIR=$IT_TMP/zz-rotmpfs # sorts after fsN/: the cleanup unmounts the btrfs on it first
  mkdir -p "$FILL_DIR"
  mount -t tmpfs -o size=200M tmpfs "$FILL_DIR"
  truncate -s 512M "$FILL_DIR/dev.img"
  mkfs.btrfs -q -f -d "$1" -m "$1" "$FILL_DIR/dev.img" >/dev/null
  adopt_btrfs "$FILL_DIR/dev.img"
}

# release_btrfs [MNT|FS_ID] : unmounts a filesystem and detaches its loop devices (made by
# make_btrfs or adopt_btrfs), so that something else (a user-mode-linux guest) may use its images
# without a second page cache in between. adopt_btrfs attaches them again.
release_btrfs() {
  local id dev
  id=$(_it_fs_id "${1:-}") || return 1
  unmount_btrfs "$id" || return 1
  local -a devs
  read -r -a devs <<<"${_IT_FS_DEVS[$id]}"
  for dev in "${devs[@]}"; do
    btrfs device scan --forget -- "$dev" >/dev/null 2>&1 || true
    losetup -d "$dev" || return 1
  done
  _IT_FS_DEVS[$id]=""
}

# --- damage fixture -------------------------------------------------------------------------------
# file_logical FILE OFFSET : prints the btrfs logical address of the sector holding byte OFFSET of
# FILE. Uses FIEMAP through e2fsprogs' filefrag (on btrfs, FIEMAP "physical" is the btrfs logical
# address). Fails for holes and for extents whose sectors do not map 1:1 (compressed = "encoded",
# inline, delalloc, preallocated = "unwritten").
file_logical() {
  local file=$1 off=$2 out
  [[ -f $file && $off =~ ^[0-9]+$ ]] || {
    note "file_logical: usage: file_logical FILE OFFSET (got '$file' '$off')"
    return 1
  }
  local ss
  ss=$(stat -f -c %S -- "$file") # btrfs reports its sectorsize here
  [[ $ss == "$IT_SECTOR" ]] || {
    note "file_logical: $file is on a filesystem with sectorsize $ss; the harness assumes $IT_SECTOR"
    return 1
  }
  sync -- "$file" # fsync: gives delalloc ranges a real location
  out=$(filefrag -v -b"$IT_SECTOR" -- "$file") || return 1
  # filefrag -v lines: "   0:        0..     511:      15616..     16127:    512:             last,eof"
  awk -v blk=$((off / IT_SECTOR)) -v sector="$IT_SECTOR" -v file="$file" -v off="$off" '
    /^ *[0-9]+: *[0-9]+\.\. *[0-9]+: *[0-9]+\.\. *[0-9]+: *[0-9]+:/ {
      line = $0
      gsub(/\.\./, " ", line); gsub(/:/, " ", line)
      n = split(line, f, " ")
      flags = (n >= 7 && f[n] !~ /^[0-9]+$/) ? f[n] : ""
      if (blk + 0 >= f[2] + 0 && blk + 0 <= f[3] + 0) {
        if (flags ~ /(encoded|inline|data_inline|unknown_loc|delalloc|unwritten|not_aligned)/) {
          printf "file_logical: offset %s of %s lies in an extent flagged %s; its sectors have no 1:1 logical address\n", off, file, flags > "/dev/stderr"
          found = -1; exit
        }
        printf "%.0f\n", (f[4] + (blk - f[2])) * sector
        found = 1; exit
      }
    }
    END {
      if (found == 0) printf "file_logical: no extent at offset %s of %s (hole or beyond EOF)\n", off, file > "/dev/stderr"
      exit (found == 1 ? 0 : 1)
    }' <<<"$out"
}

# Flushes the buffer cache of DEV and, if DEV belongs to a filesystem made here, of its siblings,
# so that btrfs-progs (which reads through that cache) does not see stale chunk or csum trees.
_it_flush_fs_of() {
  local dev=$1 id
  for id in "${!_IT_FS_DEVS[@]}"; do
    if [[ " ${_IT_FS_DEVS[$id]} " == *" $dev "* ]]; then
      # shellcheck disable=SC2086 # device paths have no spaces
      _it_flushbufs ${_IT_FS_DEVS[$id]}
      return 0
    fi
  done
  _it_flushbufs "$dev"
}

# copies_of LOGICAL DEV : prints "mirror device physical" for each copy of the sector at LOGICAL,
# from btrfs-progs' btrfs-map-logical, whose lines read
#   "mirror 1 logical 63963136 physical 105906176 device /dev/loop0".
# Run it with the filesystem unmounted (or at least synced).
copies_of() {
  local logical=$1 dev=$2 out
  [[ $logical =~ ^[0-9]+$ && -b $dev ]] || {
    note "copies_of: usage: copies_of LOGICAL DEV (got '$logical' '$dev')"
    return 1
  }
  _it_flush_fs_of "$dev"
  out=$(btrfs-map-logical -l "$logical" -b "$IT_SECTOR" "$dev" 2>"$IT_TMP/.bml.err") || {
    note "btrfs-map-logical -l $logical $dev failed:"
    _it_indent <"$IT_TMP/.bml.err"
    return 1
  }
  awk -v l="$logical" '
    $1 == "mirror" && $3 == "logical" && $5 == "physical" && $7 == "device" && $4 == l {
      print $2, $8, $6; n++
    }
    END { exit (n > 0 ? 0 : 1) }' <<<"$out" || {
    # e.g. "ERROR: no extent found at range [...]" on stderr, yet exit status 0
    note "copies_of: btrfs-map-logical printed no copy of logical $logical:"
    _it_indent <"$IT_TMP/.bml.err"
    return 1
  }
}

# sector_copy LOGICAL MIRROR DEV OUTFILE : copies the 4096-byte sector at LOGICAL as stored by
# mirror MIRROR into OUTFILE (btrfs-map-logical -b 4096 -c MIRROR -o OUTFILE).
sector_copy() {
  local logical=$1 mirror=$2 dev=$3 outfile=$4
  _it_flush_fs_of "$dev"
  rm -f -- "$outfile"
  btrfs-map-logical -l "$logical" -b "$IT_SECTOR" -c "$mirror" -o "$outfile" "$dev" >/dev/null || return 1
  [[ $(stat -c %s -- "$outfile") -eq $IT_SECTOR ]] || {
    note "sector_copy: $outfile is not $IT_SECTOR bytes"
    return 1
  }
}

# file_extents FILE : prints "FILE_OFFSET LOGICAL LENGTH" (bytes) for each extent of FILE, from
# FIEMAP (filefrag -v); fails when an extent has no 1:1 logical address (compressed, inline,
# delalloc, preallocated). Syncs FILE first. For mirror_image, while the filesystem is mounted.
file_extents() {
  local file=$1 out
  sync -- "$file"
  out=$(filefrag -v -b"$IT_SECTOR" -- "$file") || return 1
  awk -v sector="$IT_SECTOR" -v file="$file" '
    /^ *[0-9]+: *[0-9]+\.\. *[0-9]+: *[0-9]+\.\. *[0-9]+: *[0-9]+:/ {
      line = $0
      gsub(/\.\./, " ", line); gsub(/:/, " ", line)
      n = split(line, f, " ")
      flags = (n >= 7 && f[n] !~ /^[0-9]+$/) ? f[n] : ""
      if (flags ~ /(encoded|inline|data_inline|unknown_loc|delalloc|unwritten|not_aligned)/) {
        printf "file_extents: %s has an extent flagged %s\n", file, flags > "/dev/stderr"
        bad = 1; exit
      }
      printf "%.0f %.0f %.0f\n", f[2] * sector, f[4] * sector, (f[3] - f[2] + 1) * sector
    }
    END { exit bad }' <<<"$out"
}

# mirror_image EXTENTS DEV MIRROR SIZE OUT : writes to OUT the file of SIZE bytes whose extents
# EXTENTS lists (file_extents output) as copy MIRROR holds it on disk (holes read as zeros),
# read with btrfs-map-logical -c MIRROR. Run it with the filesystem unmounted (or synced).
mirror_image() {
  local extents=$1 dev=$2 mirror=$3 size=$4 out=$5 off logical len
  _it_flush_fs_of "$dev"
  rm -f -- "$out"
  truncate -s "$size" -- "$out"
  while read -r off logical len; do
    btrfs-map-logical -l "$logical" -b "$len" -c "$mirror" -o "$IT_TMP/.mirror.part" "$dev" >/dev/null || return 1
    [[ $(stat -c %s -- "$IT_TMP/.mirror.part") -eq $len ]] || {
      note "mirror_image: btrfs-map-logical gave $(stat -c %s -- "$IT_TMP/.mirror.part") of $len bytes at logical $logical"
      return 1
    }
    dd if="$IT_TMP/.mirror.part" of="$out" bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none || return 1
  done <"$extents"
  rm -f -- "$IT_TMP/.mirror.part"
}

# differing_sectors EXTENTS LOGICALS IMG1 IMG2 : prints each logical address listed in the file
# LOGICALS (one per line) whose sector differs between IMG1 and IMG2, two mirror_image copies of
# the file whose extents EXTENTS lists. With LOGICALS = the sectors btrfs check finds bad on every
# copy, these are the O_DIRECT race's signature: two different wrong versions of one sector.
differing_sectors() {
  perl -e '
    use strict; use warnings;
    my ($ext, $list, $m1, $m2) = @ARGV;
    my %want; open(my $b, "<", $list) or die "$list: $!\n"; while (<$b>) { chomp; $want{$_} = 1 }
    open(my $e, "<", $ext) or die "$ext: $!\n";
    open(my $h1, "<:raw", $m1) or die "$m1: $!\n"; open(my $h2, "<:raw", $m2) or die "$m2: $!\n";
    while (<$e>) {
      my ($off, $log, $len) = split;
      for (my $i = 0; $i < $len; $i += 4096) {
        next unless $want{$log + $i};
        my ($a, $c) = ("", "");
        sysseek($h1, $off + $i, 0); sysread($h1, $a, 4096);
        sysseek($h2, $off + $i, 0); sysread($h2, $c, 4096);
        print $log + $i, "\n" if $a ne $c;
      }
    }' "$@" | sort -n
}

# damage_sectors FILE OFFSET COUNT MODE : overwrites COUNT sectors of FILE, starting with the one
# holding OFFSET, on the device(s) below btrfs, bypassing btrfs.
#   MODE one:N  overwrite mirror N only (looks like media corruption; btrfs can repair from the rest)
#   MODE all    overwrite every copy with the SAME random bytes (no checksum can match; not the
#               race's signature: fstests btrfs/268 damages raid1 so)
#   MODE differ overwrite every copy with DIFFERENT random bytes (the race's signature: two wrong
#               versions of one sector)
# Syncs, unmounts, writes with dd at each copy's device offset (btrfs-map-logical), remounts and
# drops caches. Sets LAST_GARBAGE (the bytes written, sector i at i*4096) and DAMAGED (logicals).
damage_sectors() {
  local file=$1 off=$2 count=$3 mode=$4 want="" mnt id i
  [[ -f $file && $off =~ ^[0-9]+$ && $count =~ ^[1-9][0-9]*$ ]] || {
    note "damage_sectors: usage: damage_sectors FILE OFFSET COUNT one:N|all"
    return 1
  }
  case $mode in
    all | differ) ;;
    one:[1-9]*) want=${mode#one:} ;;
    *) note "damage_sectors: MODE must be one:N, all or differ, not '$mode'"; return 1 ;;
  esac
  need_cmd filefrag btrfs-map-logical dd
  mnt=$(findmnt -n -o TARGET -T "$file") || return 1
  id=$(_it_fs_id "$mnt") || return 1
  local -a devs logicals=()
  read -r -a devs <<<"${_IT_FS_DEVS[$id]}"

  sync -- "$file"
  local first=$((off / IT_SECTOR)) l
  for ((i = 0; i < count; i++)); do
    l=$(file_logical "$file" $(((first + i) * IT_SECTOR))) || return 1
    logicals+=("$l")
  done
  _IT_DAMAGE_SEQ=$((${_IT_DAMAGE_SEQ:-0} + 1))
  local garbage=$IT_TMP/garbage.$_IT_DAMAGE_SEQ
  head -c $((count * IT_SECTOR)) /dev/urandom >"$garbage"
  [[ $mode != differ ]] || head -c $((count * IT_SECTOR * 4)) /dev/urandom >"$garbage.more"

  unmount_btrfs "$id" || return 1
  local rc=0 mirror dev phys copies written
  for ((i = 0; i < count && rc == 0; i++)); do
    copies=$(copies_of "${logicals[i]}" "${devs[0]}") || { rc=1; break; }
    written=0
    while read -r mirror dev phys; do
      if [[ $mode == differ && $mirror -gt 1 ]]; then
        dd if="$garbage.more" of="$dev" bs="$IT_SECTOR" count=1 skip=$((i * 4 + mirror - 2)) \
          seek="$phys" oflag=seek_bytes,direct conv=notrunc,fsync status=none || { rc=1; break; }
        written=$((written + 1))
      elif [[ -z $want || $mirror == "$want" ]]; then
        dd if="$garbage" of="$dev" bs="$IT_SECTOR" count=1 skip="$i" seek="$phys" \
          oflag=seek_bytes,direct conv=notrunc,fsync status=none || { rc=1; break; }
        written=$((written + 1))
      fi
    done <<<"$copies"
    if ((rc == 0 && written == 0)); then
      note "damage_sectors: logical ${logicals[i]} has no mirror $want; copies:"
      _it_indent <<<"$copies"
      rc=1
    fi
  done
  _it_flushbufs "${devs[@]}"
  mount_btrfs "$id" || return 1 # remount even after a failed write: leave the fs as found
  ((rc == 0)) || return 1
  drop_caches
  LAST_GARBAGE=$garbage
  DAMAGED=("${logicals[@]}")
  note "damaged $count sector(s) of $file at offset $((first * IT_SECTOR)) ($mode): logical ${logicals[*]}"
}

# --- cleanup --------------------------------------------------------------------------------------
# _it_running PID:STARTTIME : whether that process is still there and not a zombie (a zombie has
# let go of every file and mount it held).
_it_running() {
  _it_starttime "${1%%:*}"
  [[ $_IT_START == "${1#*:}" && $_IT_STATE != Z ]]
}

# TERM to each tracked process, KILL after a 3 s grace, then up to 3 s more until each is gone (a
# killed process may still hold a file on a mount the cleanup is about to unmount).
# Builtins only (kill, read, disown): it runs with the signal traps that note a stop signal in
# place, and a command of its own would die of a terminal's Ctrl-C sent to the whole group. Not
# even `wait`: bash 5.2's wait_for catches INT for an instant before it restores SIG_IGN (jobs.c),
# and a shell that took one there spun on it under harness_selftest's storm of INTs. bash reaps
# its children as they end (its SIGCHLD handler); disown keeps it from reporting them. The 0.1 s
# pauses are reads that time out on a pipe this shell holds both ends of (nothing is ever written
# to it); bash runs a noted signal's trap and goes on with the read.
_it_kill_bg() {
  local e i nap
  local -a live=() still
  for e in "${_IT_BG_PIDS[@]}"; do
    disown "${e%%:*}" 2>/dev/null || true # not a job of this shell: nothing to forget
    _it_running "$e" || continue
    live+=("$e")
    kill -TERM "${e%%:*}" 2>/dev/null || true
  done
  ((${#live[@]})) && exec {nap}<> <(:)
  for ((i = 0; i < 60 && ${#live[@]} > 0; i++)); do
    if ((i == 30)); then
      for e in "${live[@]}"; do
        kill -KILL "${e%%:*}" 2>/dev/null || true
      done
    fi
    still=()
    for e in "${live[@]}"; do
      _it_running "$e" && still+=("$e")
    done
    live=("${still[@]}")
    ((${#live[@]})) && { read -r -t 0.1 -u "$nap" _ || true; }
  done
  [[ -n ${nap-} ]] && exec {nap}<&-
  for e in "${live[@]}"; do
    note "cleanup: process ${e%%:*} still there 3 s after KILL"
  done
  _IT_BG_PIDS=()
}

_it_umount_all() {
  local -a mnts=()
  local m i try
  # Our own mounts, newest first, plus anything a test mounted below $IT_TMP (deepest first).
  for ((i = ${#_IT_MOUNTS[@]} - 1; i >= 0; i--)); do
    mnts+=("${_IT_MOUNTS[i]}")
  done
  if [[ -d $IT_TMP ]]; then
    while IFS= read -r m; do
      [[ $m == "$IT_TMP"/* ]] && mnts=("$m" "${mnts[@]}")
    done < <(findmnt -rn -o TARGET 2>/dev/null | sed 's/\\x20/ /g' | sort -r)
  fi
  for m in "${mnts[@]}"; do
    mountpoint -q -- "$m" 2>/dev/null || continue
    for try in 1 2 3 4 5; do
      umount -- "$m" 2>/dev/null && break
      sleep "0.$try"
    done
    if mountpoint -q -- "$m" 2>/dev/null; then
      note "cleanup: umount $m failed; lazy unmount"
      umount -l -- "$m" 2>/dev/null || IT_CLEANUP_ERRORS+=("could not unmount $m")
    fi
  done
}

# Is DEV still attached to IMG? (Compares the kernel's backing-file path, "(deleted)" suffix aside.)
_it_loop_backs() {
  local dev=$1 img=$2 back
  back=$(losetup -n -O BACK-FILE -- "$dev" 2>/dev/null) || return 1
  back=${back% (deleted)}
  [[ $back == "$img" ]]
}

_it_detach_all() {
  local -A todo=()
  local i dev img try
  for ((i = 0; i < ${#_IT_LOOPS[@]}; i++)); do
    todo[${_IT_LOOPS[i]}]=1
  done
  # Also any device attached to one of our images (closes the window between attach and record).
  for img in "${_IT_IMAGES[@]}"; do
    [[ -e $img ]] || continue
    while IFS= read -r dev; do
      [[ -n $dev ]] && todo[$dev]=1
    done < <(losetup -n -O NAME -j "$img" 2>/dev/null)
  done
  for dev in "${!todo[@]}"; do
    img=""
    for i in "${_IT_IMAGES[@]}"; do
      if _it_loop_backs "$dev" "$i"; then
        img=$i
        break
      fi
    done
    [[ -n $img ]] || continue # already detached (and maybe reused by someone else): not ours
    btrfs device scan --forget -- "$dev" >/dev/null 2>&1 || true
    for try in 1 2 3 4 5; do
      losetup -d "$dev" 2>/dev/null || true
      _it_loop_backs "$dev" "$img" || break
      # A busy device gets autoclear instead; it goes away when its last user closes it.
      [[ $(cat "/sys/block/${dev#/dev/}/loop/autoclear" 2>/dev/null) == 1 ]] && break
      sleep "0.$try"
    done
    if _it_loop_backs "$dev" "$img" &&
      [[ $(cat "/sys/block/${dev#/dev/}/loop/autoclear" 2>/dev/null) != 1 ]]; then
      IT_CLEANUP_ERRORS+=("could not detach $dev ($img)")
    fi
  done
}

# _it_note_signals : a stop signal only sets it_cleanup's `pending` (the first one wins), and
# the ones after it are ignored until the cleanup acts on it. bash runs a trap once for every
# signal it takes: a storm of them (harness_selftest sends INTs as fast as builtins can) kept a
# shell beside CPU burners running its trap and nothing else, and its cleanup never ended.
_it_note_signals() {
  if [[ -n $pending ]]; then
    trap '' INT TERM HUP
    return 0
  fi
  trap 'pending=${pending:-INT}; trap "" INT TERM HUP' INT
  trap 'pending=${pending:-TERM}; trap "" INT TERM HUP' TERM
  trap 'pending=${pending:-HUP}; trap "" INT TERM HUP' HUP
}

# it_cleanup : kills tracked processes, unmounts, detaches, removes $IT_TMP. Idempotent; runs from
# finish and from the EXIT trap.
it_cleanup() {
  ((IT_CLEANED)) && return 0
  # A stop signal in here would end the script half way through, and the EXIT trap would find
  # the cleanup done: what was not yet unmounted or detached would stay (seen: a soak stopped
  # during a test's last cleanup left 7 loop devices). It is noted (from before the cleanup is
  # marked begun), and acted on once all is gone.
  local pending=""
  _it_note_signals
  IT_CLEANED=1
  local errexit=0
  [[ $- == *e* ]] && errexit=1
  set +e
  cd / || true
  _it_kill_bg
  # A terminal's Ctrl-C (or hangup) signals its whole foreground process group, and timeout(1)
  # or a service stop send TERM to it: ctest, this script and the umount, losetup and findmnt the
  # cleanup runs, which died of it (a losetup killed inside $(...) left its device taken for
  # someone else's). The unmounting, detaching and removing run in a subshell of a process group
  # of its own (job control on while it is started), so that no signal sent to the test's group
  # reaches it or the commands it runs. Ignoring the signals was not enough: bash 5.2 catches INT
  # for an instant around every command it waits for (jobs.c, wait_for: its own handler, then
  # SIG_IGN again), and a $(...) of the cleanup that took one there spun on it, INT caught and
  # pending, under harness_selftest's storm of INTs (seen in CI; reproduced beside CPU burners,
  # about 1 cleanup in 100 never ended). It still ignores INT, TERM, HUP and PIPE (signalled
  # by pid, or started before its group is set), and TTOU/TTIN: a background group writing to a
  # terminal with tostop set would be stopped. This shell notes stop signals again as soon as it
  # is made (one that comes in between is lost) and reads its errors, then a last line that says
  # it got to its end, from a pipe until the subshell closes it by ending: builtins only (see
  # _it_kill_bg: no `wait`); a subshell gone without that line is an error. (Not reads with a
  # timeout on a pipe this shell also writes to: one whose time ran out half way through a line
  # split it.) Its commands write where this shell does.
  local out efd wfd rfd sub done_mark=$'\x01cleanup done' had_m=0
  [[ $- == *m* ]] && had_m=1
  exec {out}>&1
  # A pipe: the process substitution's, opened once for each end through /dev/fd.
  exec {efd}<> <(:)
  exec {wfd}>"/dev/fd/$efd" {rfd}<"/dev/fd/$efd"
  exec {efd}<&-
  trap '' INT TERM HUP PIPE
  set -m
  (
    set +m
    exec {rfd}<&-
    trap '' TTOU TTIN
    {
      _it_umount_all
      _it_detach_all
      if [[ -n $ONE_TASK_CG ]] && ! rmdir "$ONE_TASK_CG"; then
        IT_CLEANUP_ERRORS+=("could not remove the cgroup $ONE_TASK_CG")
      fi
      if [[ -d $IT_TMP ]]; then
        if findmnt -rn -o TARGET 2>/dev/null | sed 's/\\x20/ /g' | grep -qF -- "$IT_TMP/"; then
          IT_CLEANUP_ERRORS+=("something is still mounted below $IT_TMP; not removing it")
        else
          rm -rf --one-file-system -- "$IT_TMP" || IT_CLEANUP_ERRORS+=("could not remove $IT_TMP")
        fi
      fi
    } >&"$out"
    printf '%s\n' "${IT_CLEANUP_ERRORS[@]}" "$done_mark"
  ) >&"$wfd" &
  sub=$!
  ((had_m)) || set +m
  disown "$sub" 2>/dev/null || true # bash reaps it without a word
  exec {wfd}>&-
  trap : PIPE
  _it_note_signals
  mapfile -t -u "$rfd" IT_CLEANUP_ERRORS # until the subshell is done; a noted signal does not stop it
  exec {rfd}<&- {out}>&-
  if ((${#IT_CLEANUP_ERRORS[@]})) && [[ ${IT_CLEANUP_ERRORS[-1]} == "$done_mark" ]]; then
    unset 'IT_CLEANUP_ERRORS[-1]'
  else
    IT_CLEANUP_ERRORS+=("the unmounting, detaching and removing ended before its end (killed?)")
  fi
  ((errexit)) && set -e
  # In the EXIT trap the script is ending anyway: a further signal stays only noted, so that the
  # summary is still printed.
  ((IT_EXITING)) && return 0
  _it_signal_traps
  case $pending in
    INT) _it_on_signal INT 130 ;;
    TERM) _it_on_signal TERM 143 ;;
    HUP) _it_on_signal HUP 129 ;;
  esac
  return 0
}

_it_on_exit() {
  local rc=$?
  IT_EXITING=1
  set +e
  trap - ERR
  if ((IT_FINISHED)); then
    exit "$rc"
  fi
  if ((IT_SKIPPED)); then
    it_cleanup
    exit 77
  fi
  # The script ended without finish: a failed command under set -e, an explicit exit, a signal.
  if ((rc == 0)); then
    _it_not_ok "script ended without calling finish"
    rc=1
  else
    _it_not_ok "aborted with exit status $rc${IT_LAST_ERR:+ at $IT_LAST_ERR}"
  fi
  it_cleanup
  local e
  for e in "${IT_CLEANUP_ERRORS[@]}"; do
    _it_not_ok "cleanup: $e"
  done
  printf '%s: %d passed, %d failed\n' "$IT_NAME" "$IT_PASS" "$IT_FAIL"
  exit "$rc"
}

_it_on_signal() {
  IT_LAST_ERR="signal $1"
  # Ignored from here on: the EXIT trap's cleanup notes them itself, and a terminal's second
  # Ctrl-C must not end the script before its summary line.
  trap '' INT TERM HUP
  exit "$2"
}

# SIGPIPE is caught (a no-op), not left to kill this shell: ctest dies of the TERM sent to its
# process group (it has no handler) and takes the read end of this script's stdout and stderr
# with it. The next write here (bash's own "Terminated" for the killed foreground command, the
# summary, a note) raised SIGPIPE and ended the script before its cleanup: mounts and loop
# devices stayed. A caught signal is reset to the default in the commands the script runs, so
# they see SIGPIPE as before; the cleanup's subshell ignores it (see it_cleanup).
trap : PIPE
set -o errtrace
trap 'IT_LAST_ERR="${BASH_SOURCE[0]##*/}:${LINENO}: ${BASH_COMMAND}"' ERR
trap _it_on_exit EXIT
_it_signal_traps() {
  trap '_it_on_signal INT 130' INT
  trap '_it_on_signal TERM 143' TERM
  trap '_it_on_signal HUP 129' HUP
}
_it_signal_traps
