#!/usr/bin/env bash
# A tree someone else can write to, changed between vmcsum's listing and its open (issue 12):
# an unprivileged user (uid 65534, setpriv) exchanges a subdirectory with a symlink to a
# directory outside the tree, and an image with a FIFO, with renameat2(RENAME_EXCHANGE) each
# time the directory is listed or a file in it opened (tests/tools/swap_on_open: inotify, so the
# swap lands between vmcsum's readdir and its open on every run, not by luck), while root runs
# `scrub DIR`, `set --nocow -r DIR --dry-run`, `set --nocow -r DIR`, `repair DIR --dry-run` and
# `repair DIR`, many times. Oracles that do not ask vmcsum: inotify on the outside directory counts
# every open, read or listing there (none allowed), sha256sum, lsattr and stat of the outside files
# (unchanged), and `timeout` (a FIFO must never block a run). `audit DIR` and `show FILE FIFO` run
# in the same rounds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq lsattr sha256sum stat setpriv mkfifo timeout
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"
: "${VMCSUM_TOOLS:?VMCSUM_TOOLS must point at the test tools}"
SWAP=$VMCSUM_TOOLS/swap_on_open
[[ -x $SWAP ]] || skip "test tool not built: $SWAP"
ROUNDS=${RACES_ROUNDS:-15}
# set opens every -r entry below the walk's root descriptor (openat2 RESOLVE_BENEATH), so it is
# held to the same rule as scrub and repair; SET_USES_WALKER=0 only reports its touches.
SET_USES_WALKER=${SET_USES_WALKER:-1}

make_btrfs --size 512
T=$MNT/tree    # what vmcsum is asked to walk; its directories belong to the attacker
O=$MNT/outside # what vmcsum must never read or change
mkdir -p "$T/sub" "$T/files" "$O"
for f in "$O/secret.raw" "$O/inner.raw" "$T/sub/inner.raw" "$T/files/victim.raw" "$T/files/other.raw"; do
  head -c $((2 << 20)) /dev/urandom >"$f"
done
ln -s "$O" "$T/sublink"
mkfifo "$T/files/victimfifo"
chown -R 65534:65534 "$T"
# The attacker must reach its tree: $IT_TMP is private to root (mktemp -d).
chmod a+x "$IT_TMP" "$(dirname "$MNT")" "$MNT"
sync -f "$MNT"
outside_state() { # sha256, attributes, inode, size, mtime and ctime of everything outside
  (cd "$O" && sha256sum -- * && lsattr -- * && stat -c '%n %i %s %Y %Z %a' -- . *)
}
BEFORE=$(outside_state)

# setpriv options: uid/gid 65534, no groups, no capabilities.
NOBODY=(--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all)

# start_swappers: one exchanging sub <-> sublink in $T, one victim.raw <-> victimfifo in
# $T/files; both started fresh for each command so that every run races from the first listing.
start_swappers() {
  # setpriv execs the swapper, so $! is the swapper itself (a shell function would put a
  # subshell between, and the TERM would not reach it).
  setpriv "${NOBODY[@]}" "$SWAP" "$T" sub sublink >"$IT_TMP/swap1.out" 2>&1 &
  S1=$!
  setpriv "${NOBODY[@]}" "$SWAP" "$T/files" victim.raw victimfifo >"$IT_TMP/swap2.out" 2>&1 &
  S2=$!
  bg_track "$S1" "$S2"
  wait_ready "$IT_TMP/swap1.out"
  wait_ready "$IT_TMP/swap2.out"
}
stop_swappers() {
  kill -TERM "$S1" "$S2" 2>/dev/null || true
  wait "$S1" "$S2" 2>/dev/null || true
  bg_untrack "$S1" "$S2"
  local n1 n2
  n1=$(tail -n1 "$IT_TMP/swap1.out")
  n2=$(tail -n1 "$IT_TMP/swap2.out")
  [[ $n1 =~ ^[0-9]+$ && $n2 =~ ^[0-9]+$ ]] || {
    note "swapper output: $n1 / $n2"
    return 1
  }
  SWAPS=$((SWAPS + n1 + n2))
  # An odd number of exchanges leaves the entries swapped: put them back for the next run.
  if [[ -L $T/sub ]]; then "$SWAP" --exchange "$T" sub sublink; fi
  if [[ -p $T/files/victim.raw ]]; then "$SWAP" --exchange "$T/files" victim.raw victimfifo; fi
  return 0
}
wait_ready() {
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q ready "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  note "swapper did not start: $(cat "$1")"
  return 1
}

# The outside directory's event counter runs for the whole test.
"$SWAP" --count "$O" >"$IT_TMP/outside.count" 2>"$IT_TMP/outside.events" &
COUNTER=$!
bg_track "$COUNTER"
wait_ready "$IT_TMP/outside.count"

# A writer blocked in open(2) of the FIFO until a reader opens it: the kernel's own witness
# that a run opened the FIFO (an open of a FIFO or device can have effects: none is allowed).
# Started while the swappers are stopped (the FIFO is at its own name), and only used once the
# kernel shows it waiting in the FIFO's open (wchan), so it never opens the image instead.
start_fifo_writer() {
  sh -c 'echo x >"$1"' sh "$T/files/victimfifo" 2>/dev/null &
  WRITER=$!
  bg_track "$WRITER"
  local i
  for ((i = 0; i < 200; i++)); do
    [[ $(cat "/proc/$WRITER/wchan" 2>/dev/null) == wait_for_partner ]] && return 0
    sleep 0.025
  done
  note "the FIFO's writer did not block in open: $(cat "/proc/$WRITER/wchan" 2>/dev/null)"
  return 1
}
stop_fifo_writer() { # sets WRITER_WAS: waiting or woken (a woken task leaves that wait at once)
  WRITER_WAS=woken
  [[ $(cat "/proc/$WRITER/wchan" 2>/dev/null) == wait_for_partner ]] && WRITER_WAS=waiting
  kill "$WRITER" 2>/dev/null || true
  wait "$WRITER" 2>/dev/null || true
  bg_untrack "$WRITER"
}

SWAPS=0
HANGS=0
TOUCHED=()
declare -A TOUCHES=()
declare -A FIFO_OPENS=()
declare -A RCS=()
run_raced() { # NAME CMD...
  local name=$1 rc=0
  shift
  start_fifo_writer
  start_swappers
  local before
  before=$(wc -l <"$IT_TMP/outside.events")
  timeout 60 "$@" >"$IT_TMP/$name.json" 2>"$IT_TMP/$name.err" || rc=$?
  stop_swappers
  stop_fifo_writer
  if [[ $WRITER_WAS == woken ]]; then
    FIFO_OPENS[$name]=$((${FIFO_OPENS[$name]:-0} + 1))
  fi
  # Which command touched the outside directory, if one did (the check below counts them all).
  if (($(wc -l <"$IT_TMP/outside.events") != before)); then
    TOUCHED+=("$name: $(tail -n +$((before + 1)) "$IT_TMP/outside.events" | tr '\n' ' ')")
    TOUCHES[${name%-dry}]=$((${TOUCHES[${name%-dry}]:-0} + 1))
  fi
  ((rc == 124)) && HANGS=$((HANGS + 1))
  RCS[$name]="${RCS[$name]:-} $rc"
  mkdir -p "$IT_TMP/json-docs"
  [[ -s $IT_TMP/$name.json ]] && cp -- "$IT_TMP/$name.json" "$IT_TMP/json-docs/$name.$RANDOM$RANDOM.json"
  return 0
}
for ((r = 0; r < ROUNDS; r++)); do
  run_raced scrub "$VMCSUM" --json scrub --no-history --no-progress "$T"
  run_raced repair "$VMCSUM" --json repair --dry-run "$T"
  # A real run too: it opens each image below the walk's root, examines and scrubs that
  # descriptor, and would write through it (issue 12).
  run_raced repair-write "$VMCSUM" --json --state-dir "$IT_TMP/state" repair --no-progress \
    --backup-dir "$IT_TMP/backup" "$T"
  run_raced set-dry "$VMCSUM" --json set --nocow -r --dry-run "$T"
  run_raced set "$VMCSUM" --json set --nocow -r "$T"
  # audit walks the tree and examines what it found below the walk's root descriptor; show is
  # named the raced file and FIFO (a path on the command line is resolved once, opened O_PATH).
  run_raced audit "$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" \
    --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$T"
  run_raced show "$VMCSUM" --json show "$T/files/victim.raw" "$T/files/victimfifo"
  # set named a path (no -r): looked up once, examined and opened through that descriptor, its
  # directory reopened by the kernel's name with no symlink followed. Resolved by name again
  # (lstat, realpath, open, then the directory), it opened the FIFO swapped in meanwhile (the
  # writer woke) and, through sub swapped for a symlink, the outside directory.
  if ((r % 2)); then to=--cow; else to=--nocow; fi
  run_raced set-named-img "$VMCSUM" --json set "$to" "$T/files/victim.raw"
  run_raced set-named-dir "$VMCSUM" --json set "$to" "$T/sub/inner.raw"
  # audit of a named file: visited in its directory only as the inode the lookup found ($O
  # holds an inner.raw too: looked up by name again, the swap showed root's).
  run_raced audit-named "$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" \
    --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$T/sub/inner.raw"
  jq -r '.files[] | "\(.action)/\(.code // "-")"' "$IT_TMP"/set-named-{img,dir}.json \
    >>"$IT_TMP/set-named.outcomes" 2>/dev/null || true
done

# The attacker's own symlink on a path root names, not raced: $T/sublink leads outside. Followed,
# root would convert, repair, scrub or list the outside file (a review's finding: set rewrote
# root's image through it). Each command refuses it, naming the symlink; the inotify counter
# and outside_state below say nothing outside was opened or changed.
for cmd in "set --nocow" "repair --no-progress" "scrub --no-history --no-progress" show \
  "audit --kernel-log ''"; do
  rc=0
  eval "\"\$VMCSUM\" $cmd \"\$T/sublink/secret.raw\"" >"$IT_TMP/viasymlink.out" 2>&1 || rc=$?
  check "${cmd%% *} through another user's symlink: refused, the symlink named (exit $rc)" \
    grep -q "the symlink $T/sublink .*not followed" "$IT_TMP/viasymlink.out"
  if [[ $cmd == set* || $cmd == repair* ]]; then
    eval "\"\$VMCSUM\" --json $cmd \"\$T/sublink/secret.raw\"" >"$IT_TMP/viasymlink.json" 2>/dev/null || true
    check_eq "${cmd%% *} through another user's symlink: refused, code symlink-refused" \
      "refused symlink-refused" "$(jq -r '.files[0] | "\(.action) \(.code)"' "$IT_TMP/viasymlink.json")"
  fi
done
# A ".." after a directory the attacker can move: $T/x/a/../../mine.raw names $T/mine.raw, but
# with a/ exchanged (renameat2, in a loop) for a directory of theirs in $MNT/shared, the ".."
# of a lookup done one name at a time led to $MNT/shared/mine.raw, root's, which set then
# rewrote (a review's finding). A ".." must lead back where it came from, or nothing is done.
mkdir -p "$T/x/a" "$MNT/shared/mal/a"
head -c 1M /dev/urandom >"$T/mine.raw"
head -c 1M /dev/urandom >"$MNT/shared/mine.raw"
chown -R 65534:65534 "$T/x" "$T/mine.raw" "$MNT/shared/mal"
victim_before=$(stat -c '%i %s %Y' "$MNT/shared/mine.raw") # inode: a rewrite makes a new one
# shellcheck disable=SC2016 # the python program's own text
setpriv "${NOBODY[@]}" /usr/bin/python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
n = 0
while not os.path.exists(sys.argv[3]):
    for _ in range(100):
        n += libc.renameat2(-100, a, -100, b, 2) == 0  # AT_FDCWD, RENAME_EXCHANGE
print(n, flush=True)
' "$T/x/a" "$MNT/shared/mal/a" "$IT_TMP/dotdot.stop" >"$IT_TMP/dotdot.swaps" 2>&1 &
DOTDOT=$!
bg_track "$DOTDOT"
: >"$IT_TMP/dotdot.acted"
for ((i = 0; i < 150; i++)); do
  if ((i % 2)); then to=--cow; else to=--nocow; fi
  "$VMCSUM" --json set "$to" "$T/x/a/../../mine.raw" 2>/dev/null |
    jq -r '.files[0] | "\(.action) \(.acted_on)"' >>"$IT_TMP/dotdot.acted" || true
  ((i % 10)) || "$VMCSUM" --json set --nocow --dry-run "$T/x/a/../../mine.raw" 2>/dev/null |
    jq -r '.files[0] | "\(.action) \(.acted_on)"' >>"$IT_TMP/dotdot.acted" || true
done
: >"$IT_TMP/dotdot.stop"
wait "$DOTDOT" 2>/dev/null || true
bg_untrack "$DOTDOT"
note "dotdot: $(cat "$IT_TMP/dotdot.swaps") exchanges; $(sort "$IT_TMP/dotdot.acted" | sed "s|$MNT/||" | uniq -c | tr -s ' \n' ' ')"
check_eq "a '..' after a directory moved meanwhile never leads to another directory's file" "" \
  "$(grep -v " $T/mine.raw\$" "$IT_TMP/dotdot.acted" | grep -v '^failed ' | grep -v '^refused ' | head -3)"
check "the attacker's exchanges really ran" test "$(head -c 12 "$IT_TMP/dotdot.swaps" | tr -dc 0-9)" -gt 100
check "... and most runs acted on the file named" test "$(grep -c "^rewritten $T/mine.raw\$" "$IT_TMP/dotdot.acted")" -gt 10
check_eq "root's file beside the attacker's directory is unchanged (inode, size, mtime; no C)" \
  "$victim_before -" "$(stat -c '%i %s %Y' "$MNT/shared/mine.raw") $(lsattr "$MNT/shared/mine.raw" | cut -c16)"

kill -TERM "$COUNTER"
wait "$COUNTER" || true
bg_untrack "$COUNTER"

note "swaps done: $SWAPS; exit codes: $(for k in "${!RCS[@]}"; do printf '%s:%s ' "$k" "${RCS[$k]}"; done)"
check "the swappers really raced (more than $ROUNDS exchanges)" test "$SWAPS" -gt "$ROUNDS"
check_eq "no run hung on a FIFO (timeout 60 s)" 0 "$HANGS"
for k in "${!FIFO_OPENS[@]}"; do note "the FIFO was opened by $k in ${FIFO_OPENS[$k]} run(s)"; done
check_eq "no run opened the FIFO swapped in for an image (its blocked writer still waited)" 0 \
  "${#FIFO_OPENS[@]}"
for t in "${TOUCHED[@]}"; do note "outside touched by $t"; done
note "set of a named path, outcomes: $(sort "$IT_TMP/set-named.outcomes" | uniq -c | tr -s ' \n' ' ')"
# Raced, a run may find the FIFO or nothing at the name, or see it change; nothing else.
# shellcheck disable=SC2016 # the $1 is the inner shell's
check "set of a named path: every outcome is one the race explains" \
  bash -c '! grep -v -E "^(rewritten/-|unchanged/-|failed/changed|refused/not-found|refused/symlink-refused|skipped/.*)$" "$1"' \
  sh "$IT_TMP/set-named.outcomes"
# inotify on the outside directory: every open, read or listing there is an event.
check_eq "scrub never opened, read or listed anything outside the tree (inotify)" 0 \
  "${TOUCHES[scrub]:-0}"
check_eq "repair --dry-run never opened, read or listed anything outside the tree (inotify)" 0 \
  "${TOUCHES[repair]:-0}"
check_eq "audit never opened, read or listed anything outside the tree (inotify)" 0 \
  "${TOUCHES[audit]:-0}"
check_eq "show never opened, read or listed anything outside the tree (inotify)" 0 \
  "${TOUCHES[show]:-0}"
check_eq "repair never opened, read or listed anything outside the tree (inotify)" 0 \
  "${TOUCHES[repair-write]:-0}"
check_eq "audit of a named file never opened, read or listed anything outside the tree" 0 \
  "${TOUCHES[audit-named]:-0}"
check "audit of a named file never reports the outside one" \
  bash -c "! grep -q '$O' '$IT_TMP/audit-named.json'"
check_eq "set of a named path never opened, read or listed anything outside the tree" 0 \
  "$((${TOUCHES[set-named-img]:-0} + ${TOUCHES[set-named-dir]:-0}))"
if ((SET_USES_WALKER)); then
  check_eq "set never opened, read or listed anything outside the tree (inotify)" 0 \
    "${TOUCHES[set]:-0}"
  check_eq "no event at all outside the tree" 0 "$(tail -n1 "$IT_TMP/outside.count")"
elif ((${TOUCHES[set]:-0})); then
  note "KNOWN (set not on the walker yet): set opened the outside directory in ${TOUCHES[set]} run(s)"
fi
check_eq "the outside files are unchanged (sha256, lsattr, stat)" "$BEFORE" "$(outside_state)"
check_eq "the outside files are still checksummed (no C attribute)" "" \
  "$(lsattr -- "$O"/* | awk '$1 ~ /C/')"
# vmcsum's own words, last: the swapped entries were refused with a reason, never scrubbed.
check "scrub never reports the outside file" \
  bash -c "! grep -q secret.raw '$IT_TMP/scrub.json'"
check "audit never reports the outside file" \
  bash -c "! grep -q secret.raw '$IT_TMP/audit.json'"
check "audit examined the tree (its images are listed)" \
  jq -e '[.images[].path | select(endswith("/other.raw"))] | length == 1' "$IT_TMP/audit.json"
# --- scrub stops on SIGINT/SIGTERM like set and repair ------------------------------------------
# A rate limit makes the scrub of 2 MiB take seconds; the signal arrives mid-file. Independent
# oracle: the exit status the shell sees (128 + signal) and that the process is gone at once.
# Not SIGINT: a background job of a non-interactive shell starts with it ignored (POSIX), and
# vmcsum rightly keeps ignored signals ignored. The rounds above made other.raw NOCOW (set -r):
# nothing of it has checksums, so only a full kernel pass reads it (the default one reads only
# findings and would be done at once).
for sig in TERM HUP; do
  "$VMCSUM" --json scrub --no-history --no-progress --kernel-pass=full --limit-rate 256K \
    "$T/files/other.raw" \
    >"$IT_TMP/cancel.json" 2>"$IT_TMP/cancel.err" &
  P=$!
  bg_track "$P"
  sleep 1
  kill -"$sig" "$P"
  rc=0
  timeout 20 tail --pid="$P" -f /dev/null || rc=124
  wait "$P" || rc=$?
  bg_untrack "$P"
  want=$((128 + $(kill -l "$sig")))
  check_eq "scrub stopped by SIG$sig: exit $want" "$want" "$rc"
  check_eq "scrub stopped by SIG$sig: interrupted, file not examined" "true false" \
    "$(jq -r '"\(.interrupted) \(.files[0].examined)"' "$IT_TMP/cancel.json")"
  cp -- "$IT_TMP/cancel.json" "$IT_TMP/json-docs/cancel.$sig.json"
done

# At a very low rate one request of 64 KiB is a minute's wait: the signal is still seen within a
# tenth of a second (the limiter sleeps in slices), not once the request's wait is over.
"$VMCSUM" --json scrub --no-history --no-progress --kernel-pass=full --limit-rate 1k \
  "$T/files/other.raw" >"$IT_TMP/slow.json" 2>/dev/null &
P=$!
bg_track "$P"
sleep 1
kill -TERM "$P"
stopped=0
timeout 5 tail --pid="$P" -f /dev/null && stopped=1
((stopped)) || kill -KILL "$P" 2>/dev/null || true
rc=0
wait "$P" || rc=$?
bg_untrack "$P"
check_eq "scrub at 1k/s: SIGTERM ends it within 5 s, exit 143" "1 143" "$stopped $rc"
check_eq "scrub at 1k/s: interrupted" true "$(jq -r .interrupted "$IT_TMP/slow.json")"

check_schema --by-name "$IT_TMP"/json-docs/*.json
finish
