#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 The vmcsum authors
#
# The harness checks itself against oracles nobody on this project wrote:
#  * lib.sh's own contract (summary line, exit codes, skip, abort) through child scripts;
#  * cleanup after a failed command, after TERM/HUP, and under a stop signal during the cleanup
#    itself (TERM to the script, a terminal's INT to its whole process group): no mount, no loop
#    device, no temp dir, no tracked process left behind (util-linux losetup/findmnt);
#  * the damage fixture, per profile (single, dup, raid1 on two devices) and csum type (crc32c,
#    xxhash, sha256, blake2), plus compress=zstd and nodatasum mounts:
#      - the kernel returns EIO for a sector overwritten on every copy (O_DIRECT read),
#        and the good data for a sector overwritten on mirror 1 only (dup/raid1 repair);
#      - `btrfs check --check-data-csum` (btrfs-progs, offline) reports mismatches at exactly
#        the logical addresses and mirrors that were overwritten;
#      - btrfs-map-logical reads back the garbage / the original bytes per mirror;
#      - `btrfs inspect-internal logical-resolve` maps file_logical's address back to the file.
# Does not need vmcsum. Root only (exit 77 otherwise).
# shellcheck disable=SC2317 # helpers below are called through check
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

need_root
need_loop
need_cmd filefrag btrfs-map-logical dd cmp findmnt blockdev head timeout

S=$IT_SECTOR
lib=$here/lib.sh
kids=$IT_TMP/children
mkdir -p "$kids/tmp"

# --- helpers ---------------------------------------------------------------------------------------

# run_child NAME BODY : writes a child test script that sources lib.sh, runs it to completion,
# leaves its combined output in $kids/NAME.out and its exit status in child_rc.
write_child() {
  local name=$1 body=$2
  {
    printf 'set -euo pipefail\nsource %q\n' "$lib"
    printf '%s\n' "$body"
  } >"$kids/$name.sh"
}
run_child() {
  write_child "$1" "$2"
  child_rc=0
  TMPDIR=$kids/tmp timeout 120 bash "$kids/$1.sh" >"$kids/$1.out" 2>&1 || child_rc=$?
}
last_line() { tail -n 1 -- "$1"; }

# Lines "<logical> <mirror>" for every data csum mismatch that btrfs check reports. Format of
# btrfs-progs 6.2 (check/main.c, on stderr):
#   mirror 1 bytenr 88145920 csum 0xf404c2d9... expected csum 0x2da12085...
# Sets check_rc and check_got (sorted unique lines).
offline_mismatches() {
  local dev=$1
  check_rc=0
  btrfs check --check-data-csum "$dev" >"$IT_TMP/check.out" 2>&1 || check_rc=$?
  check_got=$(awk '$1 == "mirror" && $3 == "bytenr" && $5 == "csum" { print $4, $2 }' \
    "$IT_TMP/check.out" | sort -u)
}

# read_sector FILE SECTOR OUT [direct] : dd one sector; fails (with dd's message) on EIO.
read_sector() {
  local flag=()
  [[ ${4:-} == direct ]] && flag=(iflag=direct)
  dd if="$1" of="$3" bs="$S" skip="$2" count=1 "${flag[@]}" status=none
}

# expect_eio FILE SECTOR : succeeds only if an O_DIRECT read of that sector fails with EIO.
expect_eio() {
  local err rc=0
  err=$(dd if="$1" of=/dev/null bs="$S" skip="$2" count=1 iflag=direct status=none 2>&1) || rc=$?
  printf '%s\n' "$err"
  ((rc != 0)) && [[ $err == *"Input/output error"* ]]
}

# Sector N of a file (the reference data or a garbage file) into OUT.
slice() { dd if="$1" of="$3" bs="$S" skip="$2" count=1 status=none; }

# copy_is LOGICAL MIRROR DEV SRC IDX : mirror MIRROR of LOGICAL equals sector IDX of file SRC.
copy_is() {
  sector_copy "$1" "$2" "$3" "$IT_TMP/copy_is.a" && slice "$4" "$5" "$IT_TMP/copy_is.b" &&
    cmp "$IT_TMP/copy_is.a" "$IT_TMP/copy_is.b"
}

# Loop devices whose backing file lies below DIR (util-linux, independent of lib.sh's records).
loops_below() { losetup -l -n -O NAME,BACK-FILE 2>/dev/null | grep -F -- " $1/" || true; }
mounts_below() { findmnt -rn -o TARGET 2>/dev/null | grep -F -- "$1/" || true; }

# --- 1. the harness's own contract -----------------------------------------------------------------
note "part 1: summary line, exit codes, skip"

run_child passing 'check "truth" true; finish'
check_eq "passing child exits 0" 0 "$child_rc"
check_eq "passing child: summary line" "passing: 1 passed, 0 failed" "$(last_line "$kids/passing.out")"
check "passing child prints ok - DESC" grep -qx 'ok - truth' "$kids/passing.out"

run_child mixed 'check "good" true; check "bad" false; check_eq "same" a a; check_eq "differ" x y; check_fails "fails" false; finish'
check_eq "failing child exits 1" 1 "$child_rc"
check_eq "failing child: summary line" "mixed: 3 passed, 2 failed" "$(last_line "$kids/mixed.out")"
check "check_eq prints expected/got" grep -qx 'FAIL - differ (expected x, got y)' "$kids/mixed.out"
check "failed check prints FAIL - DESC" grep -q '^FAIL - bad ' "$kids/mixed.out"

run_child empty 'finish'
check_eq "a test that asserts nothing fails" 1 "$child_rc"
check_eq "empty child: summary line" "empty: 0 passed, 1 failed" "$(last_line "$kids/empty.out")"

run_child skipping 'need_cmd vmcsum-no-such-command-xyz; check "unreached" true; finish'
check_eq "need_cmd skips with 77" 77 "$child_rc"
check_eq "skip prints SKIP: reason first" "SKIP: command not found: vmcsum-no-such-command-xyz" \
  "$(head -n 1 "$kids/skipping.out")"

run_child late_skip 'check "first" true; skip "the rest needs something"; check "unreached" true'
check_eq "skip after a check finishes instead of 77" 0 "$child_rc"
check_eq "late skip: summary line" "late_skip: 1 passed, 0 failed" "$(last_line "$kids/late_skip.out")"

run_child aborting 'check "first" true; false; check "unreached" true; finish'
check_eq "set -e abort keeps the failing status" 1 "$child_rc"
check_eq "abort still prints the summary" "aborting: 1 passed, 1 failed" "$(last_line "$kids/aborting.out")"
check "abort names the failing command" grep -q '^FAIL - aborted with exit status 1 at aborting.sh:.*false' "$kids/aborting.out"

run_child noexit 'check "first" true'
check_eq "ending without finish fails" 1 "$child_rc"

# --- 2. cleanup after a failed command and after signals -------------------------------------------
note "part 2: cleanup"

# Child state file lines: "tmp DIR", "pid PID" (tracked), "busy PID" (untracked, cwd in a mount).
child_state() { awk -v k="$2" '$1 == k { print $2 }' "$kids/$1.state"; }

verify_cleanup() { # NAME : the child's temp dir, mounts, loops and tracked processes are gone
  local name=$1 tmp p
  tmp=$(child_state "$name" tmp)
  check "$name: child recorded its temp dir" test -n "$tmp"
  [[ -n $tmp ]] || return 0
  check_eq "$name: no mount left below the child's temp dir" "" "$(mounts_below "$tmp")"
  check_eq "$name: no loop device left on the child's images" "" "$(loops_below "$tmp")"
  check_fails "$name: child's temp dir removed" test -e "$tmp"
  for p in $(child_state "$name" pid); do
    check_fails "$name: tracked process $p killed" kill -0 "$p"
  done
}

# Fallback if a child leaked: detach loops on its images (they are ours) so nothing outlives us.
reap_child() {
  local tmp dev back
  tmp=$(child_state "$1" tmp)
  [[ -n $tmp ]] || return 0
  while read -r dev back; do
    [[ -n $dev ]] && losetup -d "$dev" 2>/dev/null
  done < <(loops_below "$tmp")
  return 0
}

state_body() { # the part of each cleanup child that builds things and records them
  cat <<'EOF'
state=$STATE_FILE
make_btrfs --devices 2 -d raid1 -m raid1
dd if=/dev/urandom of="$MNT/f" bs=1M count=1 status=none
make_btrfs --size 128
sleep 300 & bg_track $!
{ echo "tmp $IT_TMP"; echo "pid $!"; } >"$state.tmp"
EOF
}

# 2a: a command fails under set -e; the shell's cwd and an untracked process sit inside a mount,
# so umount is busy and the harness must fall back to a lazy unmount plus loop autoclear.
STATE_FILE=$kids/errexit.state
export STATE_FILE
run_child errexit "$(state_body)
cd \"\$MNT\"
( cd \"\$MNT\" && exec sleep 8 ) &
echo \"busy \$!\" >>\"\$state.tmp\"; mv \"\$state.tmp\" \"\$state\"
false"
check_eq "errexit child exits 1" 1 "$child_rc"
check_eq "errexit child: summary line" "errexit: 0 passed, 1 failed" "$(last_line "$kids/errexit.out")"
busy=$(child_state errexit busy)
check_eq "errexit: nothing mounted below the child's temp dir (lazy unmount)" "" \
  "$(mounts_below "$(child_state errexit tmp)")"
if [[ -n $busy ]]; then
  kill "$busy" 2>/dev/null || true
  for _ in $(seq 50); do # autoclear detaches once the busy process has let go
    [[ -z $(loops_below "$(child_state errexit tmp)") ]] && break
    sleep 0.1
  done
fi
verify_cleanup errexit
reap_child errexit

# start_child [--group] [--out PATH] NAME : runs the child written as NAME in the background
# (cpid, tracked) and waits until it wrote $STATE_FILE (or ended). --group: with job control on,
# so that it leads a process group of its own and INT is not ignored (a script's background
# commands ignore INT without it, and so would every command the child runs; under ctest nothing
# ignores it). --out: its stdout and stderr go to PATH (default $kids/NAME.out).
start_child() {
  local group=0 out=""
  while [[ $1 == --* ]]; do
    case $1 in
      --group) group=1 ;;
      --out) out=$2; shift ;;
    esac
    shift
  done
  out=${out:-$kids/$1.out}
  if ((group)); then
    set -m
    TMPDIR=$kids/tmp bash "$kids/$1.sh" >"$out" 2>&1 </dev/null &
    cpid=$!
    set +m
  else
    TMPDIR=$kids/tmp bash "$kids/$1.sh" >"$out" 2>&1 &
    cpid=$!
  fi
  bg_track "$cpid"
  for _ in $(seq 600); do
    [[ -e $STATE_FILE ]] && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
}
# signal_child SIG : sends SIG to the child and waits for it; sets child_rc.
signal_child() {
  kill -s "$1" "$cpid" 2>/dev/null || true
  child_rc=0
  wait "$cpid" || child_rc=$?
  bg_untrack "$cpid"
}

# 2b/2c: signals while the child waits on a tracked process.
for sig in TERM HUP; do
  name=sig$sig
  STATE_FILE=$kids/$name.state
  write_child "$name" "$(state_body)
mv \"\$state.tmp\" \"\$state\"
wait \$!"
  start_child "$name"
  check "$sig: child got ready" test -e "$STATE_FILE"
  signal_child "$sig"
  want=143
  [[ $sig == HUP ]] && want=129
  check_eq "$sig: child exits $want" "$want" "$child_rc"
  check_eq "$sig: summary line" "$name: 0 passed, 1 failed" "$(last_line "$kids/$name.out")"
  verify_cleanup "$name"
  reap_child "$name"
done

# 2b': TERM as ctest passes it on: to the whole process group, ctest (no handler) dies of it and
# nobody reads the test's output any more. The child's first write then raised SIGPIPE, which
# used to end it before its cleanup: every mount and loop device of it stayed. Here the child
# writes into a FIFO whose reader is killed before the TERM.
name=sigPIPE
STATE_FILE=$kids/$name.state
write_child "$name" "$(state_body)
mv \"\$state.tmp\" \"\$state\"
wait \$!"
mkfifo "$kids/$name.fifo"
cat "$kids/$name.fifo" >"$kids/$name.out" &
reader=$!
start_child --out "$kids/$name.fifo" "$name"
check "PIPE: child got ready" test -e "$STATE_FILE"
kill "$reader" 2>/dev/null || true
wait "$reader" 2>/dev/null || true
signal_child TERM
check_eq "PIPE: child whose output nobody reads exits 143 after TERM (not SIGPIPE's 141)" 143 "$child_rc"
verify_cleanup "$name"
reap_child "$name"

# 2d: TERM while the harness cleans up after finish (it used to end the cleanup half way: the
# EXIT trap then found it done, and the loop devices not yet detached stayed). A tracked process
# that ignores TERM holds the cleanup in _it_kill_bg for its 3 s grace; TERM comes then.
# write_cleanup_child NAME : a child that builds the state, tracks a process ignoring TERM (which
# holds its cleanup in _it_kill_bg for the 3 s grace) and finishes with one check passed.
write_cleanup_child() {
  STATE_FILE=$kids/$1.state
  write_child "$1" "$(state_body)
( trap '' TERM; exec sleep 300 ) &
bg_track \$!
mv \"\$state.tmp\" \"\$state\"
check \"first\" true
finish"
}
# wait_cleanup_begun NAME : until the child's cleanup has begun: its first tracked sleep got its
# TERM (a zombie, or reaped), while the TERM-ignoring one holds the cleanup in its grace.
wait_cleanup_begun() {
  local tracked
  tracked=$(child_state "$1" pid)
  for _ in $(seq 100); do
    { [[ $(awk '{ print $3 }' "/proc/$tracked/stat" 2>/dev/null) == Z ]] || ! kill -0 "$tracked" 2>/dev/null; } && break
    sleep 0.05
  done
}

name=cleanTERM
write_cleanup_child "$name"
start_child "$name"
check "cleanup TERM: child got ready" test -e "$STATE_FILE"
wait_cleanup_begun "$name"
check "cleanup TERM: the child is still cleaning up when TERM comes" kill -0 "$cpid"
signal_child TERM
check_eq "cleanup TERM: child exits 143 once its cleanup is over" 143 "$child_rc"
check_eq "cleanup TERM: summary line" "$name: 1 passed, 1 failed" "$(last_line "$kids/$name.out")"
verify_cleanup "$name"
reap_child "$name"

# 2e: a terminal's Ctrl-C during the cleanup. The terminal signals the whole foreground process
# group: the commands the cleanup runs (umount, losetup, rm) died of it and left their mount,
# loop device or files. The child runs in a process group of its own, and once its cleanup has
# begun, INT is sent to that group as fast as a loop of builtins can (more Ctrl-Cs than anyone
# types, so that no command of the cleanup runs between two of them) until the child has exited.
name=cleanINT
write_cleanup_child "$name"
start_child --group "$name"
check "cleanup INT: child got ready" test -e "$STATE_FILE"
check_eq "cleanup INT: the child leads its own process group" "$cpid" "$(ps -o pgid= -p "$cpid" | tr -d ' ')"
wait_cleanup_begun "$name"
check "cleanup INT: the child is still cleaning up when INT comes" kill -0 "$cpid"
# Builtins only (kill, read of /proc): the loop ends when the child is a zombie (its group then
# still answers kill) or gone, or after 15 s (its cleanup takes under a second here). Once in CI
# the child was still in its cleanup 60 s into an endless storm (one of its two filesystems
# unmounted): reproduced beside CPU burners, a subshell of the cleanup spun on an INT that bash
# caught for an instant around a command it waited for (lib.sh now runs those commands in a
# process group of their own, and its shell waits with builtins only). The storm stops at 15 s,
# and a child still there is described (state, wait channel, signal masks and kernel stack of
# each of its processes) and gets 120 s more. Every command the cleanup ran while the storm
# lasted was exposed to it; what is checked after (no mount, loop device or temp dir left) holds
# the cleanup to the same standard.
child_alive() {
  local st
  read -r _ _ st _ 2>/dev/null <"/proc/$cpid/stat" || return 1
  [[ $st != Z ]]
}
# The child's process group and its descendants (its cleanup runs in a process group of its own).
descendants() {
  local c
  for c in $(pgrep -P "$1" || true); do
    echo "$c"
    descendants "$c"
  done
}
child_processes() { { pgrep -g "$cpid" || true; descendants "$cpid"; } | sort -un; }
describe_group() { # what each of them is doing (for a stuck cleanup); never fails the test
  local p pids
  pids=$(child_processes | paste -sd ,)
  [[ -n $pids ]] || return 0
  ps -o pid=,pgid=,stat=,wchan:32=,etime=,args= -p "$pids" 2>&1 | _it_indent || true
  for p in ${pids//,/ }; do
    note "  $p signal masks and kernel stack:"
    grep -E '^(SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt):' "/proc/$p/status" 2>&1 | paste -sd ' ' |
      _it_indent || true
    head -n 12 "/proc/$p/stack" 2>&1 | _it_indent || true
  done
  note "  the child's output so far:"
  tail -n 5 "$kids/$name.out" 2>&1 | _it_indent || true
}
sent=0 deadline=$((SECONDS + 15))
while ((SECONDS < deadline)) && kill -INT -- "-$cpid" 2>/dev/null; do
  sent=$((sent + 1))
  child_alive || break
done
note "cleanup INT: $sent INTs sent to its process group"
check "cleanup INT: the group got INTs" test "$sent" -gt 0
if child_alive; then
  note "cleanup INT: the child outlived 15 s of INTs; its processes:"
  describe_group
  for _ in $(seq 1200); do
    child_alive || break
    sleep 0.1
  done
fi
check_fails "cleanup INT: the child ended (at most 120 s after the INTs)" child_alive
if child_alive; then
  describe_group
  for p in $(child_processes); do # stuck: not left running
    kill -KILL "$p" 2>/dev/null || true
  done
  kill -KILL -- "-$cpid" 2>/dev/null || true
fi
child_rc=0
wait "$cpid" || child_rc=$?
bg_untrack "$cpid"
check_eq "cleanup INT: child exits 130 once its cleanup is over" 130 "$child_rc"
check_eq "cleanup INT: summary line" "$name: 1 passed, 1 failed" "$(last_line "$kids/$name.out")"
verify_cleanup "$name"
reap_child "$name"

# --- 3. damage fixture against the kernel, btrfs check and btrfs-map-logical ----------------------
note "part 3: damage fixture"

# A random file of 4 MiB; sectors 5-6 damaged on every copy, sector 300 on mirror 1 only.
SA=5 SB=300 SOK=100

# run_case NAME DEVICES MOUNT_OPTS CSUM_NAME DATA_PROFILE -- mkfs args...
run_case() {
  local name=$1 ndev=$2 mopts=$3 csum_name=$4 profile=$5
  shift 6
  note "case $name: mkfs $*${mopts:+, mount -o $mopts}"
  make_btrfs --devices "$ndev" --mount-opts "$mopts" "$@"
  local dev=${DEVS[0]} f=$MNT/disk.raw ref=$IT_TMP/$name.ref copies=1 datasum=1
  [[ $profile == single ]] || copies=2
  [[ ,$mopts, == *,nodatasum,* ]] && datasum=0
  local all_devs=0
  # The kernel's own list of the filesystem's devices (sysfs), not `btrfs filesystem show`: that
  # scans every block device, and fails while other loop devices come and go (seen under load).
  all_devs=$(find "/sys/fs/btrfs/$(btrfs inspect-internal dump-super "$dev" |
    awk '$1 == "fsid" { print $2 }')/devices" -mindepth 1 -maxdepth 1 | wc -l)

  # make_btrfs passed its arguments through: csum type, data profile, device count, options.
  check_eq "$name: csum type" "$csum_name" \
    "$(btrfs inspect-internal dump-super "$dev" | awk '$1 == "csum_type" { gsub(/[()]/, "", $3); print $3 }')"
  check_eq "$name: data profile" "$profile" \
    "$(btrfs filesystem df "$MNT" | awk -F'[ ,:]+' '$1 == "Data" { print $2 }')"
  check_eq "$name: devices in the filesystem" "$ndev" "$all_devs"
  if [[ -n $mopts ]]; then
    check "$name: mounted with $mopts" grep -q "${mopts%%=*}" <<<"$(findmnt -n -o OPTIONS "$MNT")"
  fi

  dd if=/dev/urandom of="$ref" bs=1M count=4 status=none
  dd if="$ref" of="$f" bs=1M conv=fsync status=none
  sync

  local la1 la2 lb="" rc=0
  la1=$(file_logical "$f" $((SA * S)))
  la2=$(file_logical "$f" $((SA * S + S + 17))) # any byte of the sector
  check "$name: logical-resolve maps file_logical's address back to the file" \
    grep -qxF "$f" <<<"$(btrfs inspect-internal logical-resolve "$la1" "$MNT" 2>&1)"
  check "$name: file_logical sees no encoded extent for random data" \
    test "$(filefrag -v "$f" | grep -c encoded)" -eq 0

  check "$name: damage_sectors all" damage_sectors "$f" $((SA * S)) 2 all
  local garbage_a=$LAST_GARBAGE
  check_eq "$name: damage_sectors overwrote file_logical's addresses" "$la1 $la2" "${DAMAGED[*]}"
  check "$name: filesystem mounted again after damage" mountpoint -q "$MNT"
  if ((copies > 1)); then
    lb=$(file_logical "$f" $((SB * S)))
    check "$name: damage_sectors one:1" damage_sectors "$f" $((SB * S)) 1 one:1
  else
    check_fails "$name: damage_sectors one:2 refused on a single copy" damage_sectors "$f" $((SOK * S)) 1 one:2
    check "$name: filesystem mounted again after the refused damage" mountpoint -q "$MNT"
  fi
  local garbage_b=$LAST_GARBAGE

  # Offline oracles, filesystem unmounted.
  check "$name: unmount" unmount_btrfs
  local m t=$IT_TMP/sector.$name e=$IT_TMP/expect.$name
  for ((m = 1; m <= copies; m++)); do
    check "$name: mirror $m of sector $SA holds the garbage (btrfs-map-logical)" \
      copy_is "$la1" "$m" "$dev" "$garbage_a" 0
    check "$name: mirror $m of sector $((SA + 1)) holds the garbage" \
      copy_is "$la2" "$m" "$dev" "$garbage_a" 1
  done
  if [[ -n $lb ]]; then
    check "$name: mirror 1 of sector $SB holds the garbage" copy_is "$lb" 1 "$dev" "$garbage_b" 0
    check "$name: mirror 2 of sector $SB still holds the original" copy_is "$lb" 2 "$dev" "$ref" "$SB"
  fi

  local want=""
  if ((datasum)); then
    for ((m = 1; m <= copies; m++)); do
      want+="$la1 $m"$'\n'"$la2 $m"$'\n'
    done
    [[ -n $lb ]] && want+="$lb 1"$'\n'
  fi
  want=$(sort -u <<<"$want" | sed '/^$/d')
  offline_mismatches "$dev"
  check_eq "$name: btrfs check --check-data-csum mismatches (logical mirror)" "$want" "$check_got"
  check_eq "$name: btrfs check exit status" "$((datasum ? 1 : 0))" "$check_rc"

  # Kernel oracles.
  check "$name: mount again" mount_btrfs
  if ((datasum)); then
    check "$name: O_DIRECT read of sector $SA (all copies damaged) fails with EIO" expect_eio "$f" "$SA"
    check "$name: O_DIRECT read of sector $((SA + 1)) fails with EIO" expect_eio "$f" $((SA + 1))
    check_fails "$name: buffered read of sector $SA fails too" read_sector "$f" "$SA" /dev/null
  else
    check "$name: O_DIRECT read of the damaged sector succeeds" read_sector "$f" "$SA" "$t" direct
    slice "$garbage_a" 0 "$e"
    check "$name: ...and silently returns the garbage" cmp -s "$t" "$e"
  fi
  if [[ -n $lb ]] && ((datasum)); then
    check "$name: O_DIRECT read of sector $SB (mirror 1 damaged) succeeds" read_sector "$f" "$SB" "$t" direct
    slice "$ref" "$SB" "$e"
    check "$name: ...and returns the original data" cmp -s "$t" "$e"
    drop_caches
    check "$name: buffered read of sector $SB after drop_caches succeeds" read_sector "$f" "$SB" "$t"
    check "$name: ...and returns the original data" cmp -s "$t" "$e"
  fi
  check "$name: undamaged sector $SOK reads back" read_sector "$f" "$SOK" "$t" direct
  slice "$ref" "$SOK" "$e"
  check "$name: ...unchanged" cmp -s "$t" "$e"
}

run_case single 1 "" crc32c single -- -d single -m dup --csum crc32c
run_case dup 1 "" xxhash64 DUP -- -d dup -m dup --csum xxhash
run_case raid1 2 "" sha256 RAID1 -- -d raid1 -m raid1 --csum sha256
run_case zstd 1 "compress=zstd" blake2 DUP -- -d dup -m dup --csum blake2
# Compressed extents have no 1:1 sector mapping: file_logical must refuse them.
head -c 1M /dev/zero | tr '\\0' v >"$MNT/text"
sync
check "zstd: compressible data is stored encoded" grep -q encoded <<<"$(filefrag -v "$MNT/text")"
check_fails "zstd: file_logical refuses an offset inside a compressed extent" file_logical "$MNT/text" 8192
check "zstd: remount_btrfs" remount_btrfs
check "zstd: remount keeps compress=zstd" grep -q 'compress=zstd' <<<"$(findmnt -n -o OPTIONS "$MNT")"
run_case nodatasum 1 "nodatasum" crc32c DUP -- -d dup -m dup

check_eq "five filesystems alive at once" 5 "$(findmnt -rn -o TARGET | grep -cF -- "$IT_TMP/")"

# --- 4. our own cleanup ----------------------------------------------------------------------------
note "part 4: own cleanup"
mytmp=$IT_TMP
it_cleanup
check_eq "own cleanup: no mount left" "" "$(mounts_below "$mytmp")"
check_eq "own cleanup: no loop device left" "" "$(loops_below "$mytmp")"
check_fails "own cleanup: temp dir removed" test -e "$mytmp"
finish
