#!/usr/bin/env bash
# shellcheck disable=SC2016 # jq programs are single-quoted on purpose
# The CLI as a person and a script meet it: one interruption contract for every command (the
# first SIGINT/SIGTERM stops at a safe point and leaves a valid document with interrupted: true
# and status 128 + the signal; a second one ends vmcsum at once).
# The signal is sent only once vmcsum has the image open (read from /proc/PID/fd), so its
# handler is surely installed and the work surely under way: nothing here depends on timing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq env
keep_json_documents # every --json document is validated at the end (tests/schema)
: "${VMCSUM:?}"
# The terminal checks run the binary itself, without the wrapper's tee in the pipeline.
REAL_VMCSUM=$VMCSUM_REAL

has_open() { # PID PATH: whether PID has PATH open
  local l
  for l in /proc/"$1"/fd/*; do
    [[ $(readlink "$l" 2>/dev/null) == "$2" ]] && return 0
  done
  return 1
}

has_inode_open() { # PID FILE: whether PID has FILE's inode open (whatever name its fd shows:
  # an O_TMPFILE linked later still reads as "#ino (deleted)")
  local l want
  want=$(stat -c '%d:%i' "$2" 2>/dev/null) || return 1
  for l in /proc/"$1"/fd/*; do
    [[ $(stat -L -c '%d:%i' "$l" 2>/dev/null) == "$want" ]] && return 0
  done
  return 1
}
# Whether a thread of PID sleeps in write(2, ...): /proc/PID/task/*/syscall starts with the
# syscall number and the first argument (write is 1 on x86-64, 64 on arm64 and riscv64).
blocked_writing_stderr() { # PID
  local nr=1 t
  [[ $(uname -m) == x86_64 ]] || nr=64
  for t in /proc/"$1"/task/*/syscall; do
    [[ $(cat "$t" 2>/dev/null) == "$nr 0x2 "* ]] && return 0
  done
  return 1
}
sigint_pending() { # PID: SIGINT (bit 1 of the mask: signal 2) pending or held back
  local m
  for m in $(awk '/^(SigPnd|ShdPnd):/ { print $2 }' /proc/"$1"/task/*/status 2>/dev/null); do
    ((0x$m & 2)) && return 0
  done
  return 1
}

# Starts vmcsum ARGS... in the background (stdout $IT_TMP/out.json, stderr out.err), waits
# until it has FILE open, sends it the signals given in SIGS (space-separated), sets RC.
interrupt_when_open() { # FILE "SIGS" ARGS...
  local file=$1 sigs=$2 pid seen=0 s
  shift 2
  env --default-signal=INT "$VMCSUM" "$@" >"$IT_TMP/out.json" 2>"$IT_TMP/out.err" &
  pid=$!
  bg_track "$pid"
  for _ in $(seq 1200); do
    has_open "$pid" "$file" && { seen=1; break; }
    [[ -d /proc/$pid ]] || break # it ended early: the check below says so
    sleep 0.05
  done
  check_eq "vmcsum $*: caught with $(basename -- "$file") open" 1 "$seen"
  for s in $sigs; do
    kill -"$s" "$pid" 2>/dev/null || true
  done
  RC=0
  wait "$pid" || RC=$?
  bg_untrack "$pid"
}

make_btrfs --size 512 -d single -m dup
IMG=$MNT/disk.raw
dd if=/dev/urandom of="$IMG" bs=1M count=96 status=none
sync

# --- scrub: SIGINT, then SIGTERM, stop between two reads ------------------------------------------
for sig in INT:130 TERM:143; do
  interrupt_when_open "$IMG" "${sig%%:*}" --json scrub --limit-rate 1M "$MNT"
  check_eq "scrub: SIG${sig%%:*} ends it with ${sig#*:}" "${sig#*:}" "$RC"
  check "scrub: SIG${sig%%:*}: a valid document saying interrupted" \
    jq -e --argjson rc "${sig#*:}" '(.schema | startswith("vmcsum.scrub/")) and .interrupted == true and .exit_code == $rc' \
    "$IT_TMP/out.json"
  check "scrub: SIG${sig%%:*}: the image is reported as not examined (it was not finished)" \
    jq -e '[.files[] | select(.examined == false)] | length == 1' "$IT_TMP/out.json"
  check "scrub: SIG${sig%%:*}: stderr says interrupted" grep -q 'interrupted' "$IT_TMP/out.err"
done

# --- a second signal ends vmcsum at once, by that signal ---------------------------------------
# Two signals of one kind merge while pending, so the second is SIGTERM; SIGSTOP before and
# SIGCONT after make both arrive together. Which one the handler sees first is the kernel's
# choice (it stacks both frames), so the status is 130 or 143; either way vmcsum dies at once
# by the second one: no document at all (a handled stop always writes one).
interrupt_when_open "$IMG" "STOP INT TERM CONT" --json scrub --limit-rate 1M "$MNT"
check "scrub: SIGINT and SIGTERM together: ended by a signal (130 or 143, got $RC)" \
  test "$RC" = 130 -o "$RC" = 143
check_eq "scrub: SIGINT and SIGTERM together: killed before writing anything" "" "$(cat "$IT_TMP/out.json")"

# --- audit stops its walk at the next entry, not once it is done ------------------------------
# strace delivers SIGINT as audit enters its first getdents64 on one directory of the tree
# (-P: only calls on the paths named count and are logged; the kernel raises the signal,
# nothing here is timed). The walk takes directories in readdir order, which `ls -f` prints
# (the same getdents64 order): the two directories after that one must never be read, and as
# the walk comes before the examination, no image is examined at all. The tree was just
# written, so it is in memory and the walk reads nothing ahead (a cold walk would list the
# directories after it ahead of time: sys::WalkOptions::prefetch_threads).
# strace needs ptrace, which a container may forbid: then the check cannot run and says so.
if command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null; then
  TREE=$MNT/tree
  for d in d1 d2 d3 d4 d5 d6; do
    mkdir -p "$TREE/$d"
    printf 'QFI\xfb\0\0\0\3' >"$TREE/$d/disk.qcow2"
    truncate -s 2M "$TREE/$d/disk.qcow2"
  done
  mapfile -t order < <(ls -f "$TREE" | grep -v '^\.')
  # The fourth directory walked: three complete before it, two after it.
  target=$TREE/${order[3]} after1=$TREE/${order[4]} after2=$TREE/${order[5]}
  rc=0
  # LeakSanitizer refuses to run under ptrace and aborts the process at exit (the sanitizer
  # pass of scripts/test.sh): leaks are checked by every other run, not this traced one.
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
  strace -f -y -o "$IT_TMP/audit-strace.log" -P "$target" -P "$after1" -P "$after2" \
    -e trace=getdents64 -e inject=getdents64:signal=SIGINT:when=1 \
    "$REAL_VMCSUM" --json audit --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" \
    --pve-dir "$IT_TMP/none" --kernel-log '' "$TREE" >"$IT_TMP/audit-int.json" 2>"$IT_TMP/audit-int.err" || rc=$?
  check_eq "audit: SIGINT during the walk: exit 130" 130 "$rc"
  check "audit: SIGINT during the walk: a valid document saying interrupted, no image examined" \
    jq -e '(.schema | startswith("vmcsum.audit/")) and .interrupted == true and .exit_code == 130
      and (.images | length) == 0' "$IT_TMP/audit-int.json"
  check "audit: SIGINT during the walk: delivered while it read the directory chosen (strace)" \
    grep -qF "<$target>" "$IT_TMP/audit-strace.log"
  check_eq "audit: SIGINT during the walk: the directories after it never read" 0 \
    "$(grep -cF -e "<$after1>" -e "<$after2>" "$IT_TMP/audit-strace.log" || true)"
  cp "$IT_TMP/audit-int.json" "$IT_TMP/json-docs/audit-interrupted.json"
  rm -rf "$TREE"
else
  note "strace is missing or cannot trace here (scripts/setup.sh installs it; ptrace may be forbidden): the audit stop check did not run"
fi

# --- identity: a scrub document made in one directory, with a relative path, works from / ------
mkdir "$MNT/A"
SMALL=$MNT/A/small.raw
dd if=/dev/urandom of="$SMALL" bs=1M count=1 status=none
sync
damage_sectors "$SMALL" 8192 1 all
rc=0
(cd "$MNT/A" && "$VMCSUM" --json scrub --no-progress small.raw >"$IT_TMP/s.json" 2>/dev/null) || rc=$?
check_eq "scrub of the damaged file: critical (2)" 2 "$rc"
check "scrub document: path as typed, canonical_path absolute" \
  jq -e --arg p "$SMALL" '.files[0].path == "small.raw" and .files[0].canonical_path == $p' "$IT_TMP/s.json"
check_eq "scrub document: inode is stat's" "$(stat -c %i "$SMALL")" "$(jq .files[0].inode "$IT_TMP/s.json")"
check_eq "scrub document: subvolume id is btrfs's" "$(btrfs inspect-internal rootid "$SMALL")" \
  "$(jq .files[0].subvolume_id "$IT_TMP/s.json")"
check_eq "scrub document: fsid is the superblock's" \
  "$(btrfs inspect-internal dump-super "${DEVS[0]}" | awk '$1 == "fsid" { print $2 }')" \
  "$(jq -r .files[0].fsid "$IT_TMP/s.json")"
rc=0
(cd / && "$VMCSUM" --json repair --dry-run --from "$IT_TMP/s.json" >"$IT_TMP/r.json" 2>"$IT_TMP/r.err") || rc=$?
check "repair --from run from /: the file found by its canonical path" \
  jq -e --arg p "$SMALL" '.files | length == 1 and .[0].acted_on == $p and .[0].action != "failed" and .[0].action != "refused"' "$IT_TMP/r.json"
check_eq "repair --from run from /: the damaged sector re-verified bad" 1 "$(jq .files[0].bad_sectors "$IT_TMP/r.json")"
# Another file renamed over it: same path, another inode. Its offsets are not the scrubbed file's.
dd if=/dev/urandom of="$MNT/A/copy" bs=1M count=1 status=none
mv -f "$MNT/A/copy" "$SMALL"
rc=0
(cd / && "$VMCSUM" --json repair --dry-run --from "$IT_TMP/s.json" >"$IT_TMP/r.json" 2>"$IT_TMP/r.err") || rc=$?
check_eq "repair --from, file replaced since the scrub: exit 3" 3 "$rc"
check "repair --from, file replaced: refused with code identity-changed" \
  jq -e '.files[0].action == "refused" and .files[0].code == "identity-changed"' "$IT_TMP/r.json"

# --- every document: who wrote it, where, when; --json=short; audit/scrub summary and severity --
J=$("$VMCSUM" --json=short show "$SMALL")
check_eq "--json=short: the document is one line" 1 "$(printf '%s\n' "$J" | wc -l)"
check "every document: schema first, then vmcsum_version, hostname (uname -n), generated_at (now, UTC)" \
  jq -e --arg h "$(uname -n)" '(keys_unsorted[0:4] == ["schema", "vmcsum_version", "hostname", "generated_at"])
    and .vmcsum_version != "" and .hostname == $h
    and ((.generated_at | fromdateiso8601) - now | fabs) < 600' <<<"$J"
rc=0
"$VMCSUM" --json=loud show "$SMALL" >"$IT_TMP/loud.json" 2>/dev/null || rc=$?
check_eq "--json=loud: usage error (64)" 64 "$rc"
check "scrub summary: one critical file, the damaged one, one bad sector" \
  jq -e '.summary.files == 1 and .summary.critical == 1 and .summary.bad_sectors == 1
    and .files[0].severity == "critical"' "$IT_TMP/s.json"
rc=0
"$VMCSUM" --json audit --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" \
  --kernel-log '' "$SMALL" >"$IT_TMP/a.json" 2>/dev/null || rc=$?
check "audit summary: the counts add up to the images, each image has its worst severity" \
  jq -e '.summary.images == (.images | length) and .summary.images >= 1
    and .summary.critical + .summary.warning + .summary.info == .summary.images
    and all(.images[]; .severity == "info" or .severity == "warning" or .severity == "critical")
    and .images[0].inode != null and (.images[0].canonical_path | startswith("/"))' "$IT_TMP/a.json"

# --- the screen, in a real pseudo-terminal (tmux) at 60 and 200 columns ------------------------
# tmux is the oracle: capture-pane -J joins the lines the terminal wrapped, so a screen captured
# with and without -J has the same number of lines exactly when no row wrapped.
if command -v tmux >/dev/null; then
  # remain-on-exit from the start: a command quicker than a later set-option would take the
  # pane (and its status and screen) with it.
  printf 'set -g remain-on-exit on\nset -g status off\n' >"$IT_TMP/tmux.conf"
  # The servers' sockets in the test's own directory (removed with it), not in /tmp/tmux-UID.
  TM=(env TMUX_TMPDIR="$IT_TMP" tmux -L "vmcsum-it-$$" -f "$IT_TMP/tmux.conf")
  LONG=$MNT/a-directory-with-a-rather-long-name/and-a-second-level-below-it
  mkdir -p "$LONG"
  dd if=/dev/urandom of="$LONG/guest-disk-with-a-long-name.raw" bs=1M count=1 status=none
  # Runs ARGS... in a fresh pane COLS wide (COLUMNS unset: the terminal's own width counts);
  # the pane stays after the command ends so its screen can be read. The status comes from a
  # shell around the command: tmux 3.3 sometimes leaves #{pane_dead_status} empty. That shell
  # traps SIGINT (so Ctrl-C does not end it before it wrote the status); a trapped signal is
  # back to its default in the command it starts, so the command meets Ctrl-C as it would in a
  # login shell.
  tty_run() { # COLS ARGS...
    local cols=$1 cmd
    shift
    rm -f "$IT_TMP/tty.status"
    printf -v cmd '%q ' sh -c 'trap : INT; "$@"; echo $? >"$0"' "$IT_TMP/tty.status" env -u COLUMNS "$@"
    "${TM[@]}" kill-server 2>/dev/null || true
    # A server of its own each run: kill-server returns before the old server is gone, and a
    # new session on the same socket then met it exiting ("server exited unexpectedly", a
    # rehearsal's CI run).
    _tty_runs=$((${_tty_runs:-0} + 1))
    TM=(env TMUX_TMPDIR="$IT_TMP" tmux -L "vmcsum-it-$$-$_tty_runs" -f "$IT_TMP/tmux.conf")
    "${TM[@]}" new-session -d -x "$cols" -y 50 "exec $cmd"
    bg_track "$("${TM[@]}" display-message -p '#{pid}')"
  }
  tty_dead() { [[ -s $IT_TMP/tty.status ]]; }
  tty_vmcsum() { # the pid of vmcsum in the pane (the trapping shell's child), "" if none yet
    pgrep -P "$("${TM[@]}" display-message -p '#{pane_pid}')" | head -1 || true
  }
  tty_status() { cat "$IT_TMP/tty.status"; }
  tty_wait() { # waits (up to 120 s) for the command to end and tmux to have read all it wrote
    for _ in $(seq 2400); do
      tty_dead && [[ $("${TM[@]}" display-message -p '#{pane_dead}') == 1 ]] && return 0
      sleep 0.05
    done
    return 1
  }
  # The whole pane, history included (the "Pane is dead" line may scroll the first row out),
  # without that line and the empty ones at the end.
  screen() {
    "${TM[@]}" capture-pane -p -S - "$@" | grep -v '^Pane is dead' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
  }
  for cols in 60 200; do
    tty_run "$cols" "$REAL_VMCSUM" show "$LONG/guest-disk-with-a-long-name.raw" "$IMG"
    tty_wait
    S=$(screen)
    check_eq "show in $cols columns: exit 0" 0 "$(tty_status)"
    check_eq "show in $cols columns: no row wrapped" "$(grep -c '' <<<"$S")" "$(screen -J | grep -c '')"
    check_eq "show in $cols columns: the heading, then both files" "PATH 2" \
      "$(head -1 <<<"$S" | cut -d' ' -f1) $(grep -c 'raw ' <<<"$S")"
  done
  tty_run 200 "$REAL_VMCSUM" -o path,datasum show "$LONG/guest-disk-with-a-long-name.raw"
  tty_wait
  check "show -o path,datasum in 200 columns: the long path whole" \
    grep -qF "$LONG/guest-disk-with-a-long-name.raw  yes" <<<"$(screen)"
  tty_run 60 "$REAL_VMCSUM" show "$LONG/guest-disk-with-a-long-name.raw"
  tty_wait
  check "show in 60 columns: the long path keeps both ends around an ellipsis" \
    grep -q "^/.*…[^ ]*name.raw " <<<"$(screen)"

  # Progress: one line, redrawn in place (never a second progress line), gone at the end.
  # --kernel-pass=full: the read through btrfs after the per-copy pass is a phase of its own,
  # rate-limited like the first, so each lasts seconds (96 MiB at 8 MiB/s).
  tty_run 60 "$REAL_VMCSUM" scrub --limit-rate 8m --kernel-pass full "$IMG"
  seen=0 kseen=0
  for _ in $(seq 2400); do
    s=$(screen -J)
    if grep -q '%' <<<"$s"; then
      seen=$((seen + 1))
      check_eq "scrub progress in 60 columns: one line, redrawn in place ($seen)" 1 "$(grep -c '%' <<<"$s")"
      check_eq "scrub progress in 60 columns: not wrapped ($seen)" "$(screen | wc -l)" "$(grep -c '' <<<"$s")"
      grep -q 'kernel pass' <<<"$s" && kseen=1
      [[ $seen -ge 3 && $kseen == 1 ]] && break
      sleep 0.5
    fi
    tty_dead && break
    sleep 0.05
  done
  check "scrub progress in 60 columns: seen (at least 3 times)" test "$seen" -ge 3
  check_eq "scrub progress in 60 columns: the kernel pass has a phase of its own" 1 "$kseen"
  tty_wait
  check_eq "scrub in 60 columns: exit 0" 0 "$(tty_status)"
  check_eq "scrub in 60 columns: the progress line cleared" 0 "$(screen -J | grep -c '%')"
  check "scrub in 60 columns: the table is there" grep -q "^PATH" <<<"$(screen)"

  # Ctrl-C from the keyboard, as a person does it: the same contract for scrub and repair.
  for cmd in scrub repair; do
    # sh execs vmcsum once stdout is the file (no tee between: Ctrl-C would end it too).
    tty_run 60 sh -c 'exec "$0" --json "$@" >"'"$IT_TMP"'/tty.json"' "$REAL_VMCSUM" "$cmd" --limit-rate 4m "$IMG"
    pane=$("${TM[@]}" display-message -p '#{pane_pid}')
    seen=0
    for _ in $(seq 1200); do
      for p in $(pgrep -P "$pane" || true); do # the trapping shell's child: vmcsum
        has_open "$p" "$IMG" && seen=1
      done
      [[ $seen == 1 ]] && break
      tty_dead && break
      sleep 0.05
    done
    check_eq "$cmd in a terminal: caught with the image open" 1 "$seen"
    "${TM[@]}" send-keys C-c
    tty_wait
    check_eq "$cmd in a terminal, Ctrl-C: exit 130" 130 "$(tty_status)"
    check "$cmd in a terminal, Ctrl-C: a valid document saying interrupted" \
      jq -e '.interrupted == true and .exit_code == 130' "$IT_TMP/tty.json"
    cp "$IT_TMP/tty.json" "$IT_TMP/json-docs/tty-$cmd.json"
    check_eq "$cmd in a terminal, Ctrl-C: no progress line left" 0 "$(screen -J | grep -c '%')"
  done

  # --- set: Ctrl-C with its temp file open -----------------------------------------------------
  # Output stopped first (Ctrl-S; tmux panes have IXON): vmcsum's first write to the terminal
  # then blocks, and set's first is the progress line drawn after the first chunk went into the
  # temp file. So vmcsum waits there with the temp file open, whatever the machine's speed,
  # until Ctrl-C, which also restarts output (n_tty: a signal character does start_tty).
  # The command waits for a line on the terminal before it starts: the line discipline takes
  # Ctrl-S before the Enter that ends that line, so output is stopped before vmcsum runs.
  sha_img=$(sha256sum <"$IMG")
  ino_img=$(stat -c %i "$IMG")
  tty_run 60 sh -c 'read -r _; exec "$0" --json "$@" >"'"$IT_TMP"'/tty.json"' "$REAL_VMCSUM" set --nocow "$IMG"
  "${TM[@]}" send-keys C-s Enter
  vp=$(tty_vmcsum)
  seen=0
  for _ in $(seq 1200); do
    vp=${vp:-$(tty_vmcsum)}
    if [[ -n $vp ]] && blocked_writing_stderr "$vp"; then
      for t in "$MNT"/.disk.raw.vmcsum-tmp.*; do
        [[ -e $t ]] && has_inode_open "$vp" "$t" && seen=1
      done
      break # blocked for good: output is stopped
    fi
    tty_dead && break
    sleep 0.05
  done
  check_eq "set in a terminal: caught writing its progress with the temp file open" 1 "$seen"
  "${TM[@]}" send-keys C-c
  tty_wait
  check_eq "set in a terminal, Ctrl-C: exit 130" 130 "$(tty_status)"
  check "set in a terminal, Ctrl-C: a valid document saying interrupted" \
    jq -e '.interrupted == true and .exit_code == 130 and .files[0].code == "interrupted"' "$IT_TMP/tty.json"
  cp "$IT_TMP/tty.json" "$IT_TMP/json-docs/tty-set.json"
  check_eq "set in a terminal, Ctrl-C: no progress line left" 0 "$(screen -J | grep -c '%')"
  check "set in a terminal, Ctrl-C: the message after the progress line reached the screen" \
    grep -q 'interrupted' <<<"$(screen)"
  check_eq "set in a terminal, Ctrl-C: the image untouched (inode, content), no temp file left" \
    "$ino_img $sha_img" "$(stat -c %i "$IMG") $(sha256sum <"$IMG")$(ls -d "$MNT"/.disk.raw.vmcsum-tmp.* 2>/dev/null)"
  check_eq "set in a terminal, Ctrl-C: still checksummed (lsattr: no C)" "" \
    "$(lsattr -d "$IMG" | cut -d' ' -f1 | tr -dc C)"

  # --- bench: its progress in 60 columns, then Ctrl-C ------------------------------------------
  # A budget of 600 s: each case's calibration run alone lasts 600 * 0.9 / 15 s, so once its
  # progress is on the screen bench is surely mid-run, its scratch files open, when Ctrl-C comes.
  scratch_before=$(ls -A "$MNT")
  tty_run 60 sh -c 'exec "$0" --json "$@" >"'"$IT_TMP"'/tty.json"' "$REAL_VMCSUM" bench --seconds 600 "$MNT"
  seen=0
  for _ in $(seq 2400); do
    s=$(screen -J)
    if grep -q 'prefill\|calibrate' <<<"$s"; then
      seen=$((seen + 1))
      check_eq "bench progress in 60 columns: one line ($seen)" 1 "$(grep -c 'prefill\|calibrate\|/s' <<<"$s")"
      check_eq "bench progress in 60 columns: not wrapped ($seen)" "$(screen | wc -l)" "$(grep -c '' <<<"$s")"
      [[ $seen -ge 2 ]] && break
      sleep 0.3
    fi
    tty_dead && break
    sleep 0.05
  done
  check_eq "bench progress in 60 columns: seen (twice)" 2 "$seen"
  "${TM[@]}" send-keys C-c
  tty_wait
  check_eq "bench in a terminal, Ctrl-C: exit 130" 130 "$(tty_status)"
  check "bench in a terminal, Ctrl-C: a valid document saying interrupted" \
    jq -e '.schema == "vmcsum.bench/1" and .interrupted == true and .exit_code == 130' "$IT_TMP/tty.json"
  cp "$IT_TMP/tty.json" "$IT_TMP/json-docs/tty-bench.json"
  check_eq "bench in a terminal, Ctrl-C: no progress line left" 0 "$(screen -J | grep -c 'prefill\|calibrate\|%')"
  check_eq "bench in a terminal, Ctrl-C: no scratch file left" "$scratch_before" "$(ls -A "$MNT")"

  # --- probe: its progress in 60 columns, then Ctrl-C ------------------------------------------
  # The filesystem frozen: probe draws its first phase, then blocks making its first scratch
  # file (mnt_want_write waits for the thaw), so its progress stays on the screen and Ctrl-C
  # (held back while the probe has something to clean up) finds it mid-probe.
  fsfreeze --freeze "$MNT"
  tty_run 60 sh -c 'exec "$0" --json "$@" >"'"$IT_TMP"'/tty.json"' "$REAL_VMCSUM" probe "$MNT"
  seen=0
  for _ in $(seq 1200); do
    s=$(screen -J)
    if grep -q '%' <<<"$s"; then
      seen=1
      check_eq "probe progress in 60 columns: one line" 1 "$(grep -c '%' <<<"$s")"
      check_eq "probe progress in 60 columns: not wrapped" "$(screen | wc -l)" "$(grep -c '' <<<"$s")"
      break
    fi
    tty_dead && break
    sleep 0.05
  done
  check_eq "probe progress in 60 columns: seen" 1 "$seen"
  "${TM[@]}" send-keys C-c
  # The signal is pending before the thaw: wait until the kernel says so (SigPnd/ShdPnd of any
  # thread has SIGINT, bit 2), then thaw.
  vp=$(tty_vmcsum)
  for _ in $(seq 200); do
    [[ -n $vp ]] && sigint_pending "$vp" && break
    sleep 0.05
  done
  fsfreeze --unfreeze "$MNT"
  tty_wait
  check_eq "probe in a terminal, Ctrl-C: exit 130" 130 "$(tty_status)"
  check "probe in a terminal, Ctrl-C: a valid document saying interrupted" \
    jq -e '.schema == "vmcsum.probe/1" and .interrupted == true and .exit_code == 130' "$IT_TMP/tty.json"
  cp "$IT_TMP/tty.json" "$IT_TMP/json-docs/tty-probe.json"
  check_eq "probe in a terminal, Ctrl-C: no progress line left" 0 "$(screen -J | grep -c '%')"
  check_eq "probe in a terminal, Ctrl-C: no scratch file left" "$scratch_before" "$(ls -A "$MNT")"
  "${TM[@]}" kill-server 2>/dev/null || true
else
  note "tmux is missing (scripts/setup.sh installs it): the screen checks did not run"
fi

# --json --version is a document too (a script parses what it asked for as JSON): it names the
# schema of every document vmcsum writes, and the documents written above are among them.
"$VMCSUM" --json --version >"$IT_TMP/version.json"
check_eq "--version: text without --json" "vmcsum " "$("$REAL_VMCSUM" --version | cut -c1-7)"
check_eq "--json=short --version: one line of JSON" "1 vmcsum.version/1" \
  "$("$REAL_VMCSUM" --json=short --version | wc -l) $("$REAL_VMCSUM" --json=short --version | jq -r .schema)"
written=$(jq -r '.schema' "$IT_TMP"/json-docs/*.json | sort -u)
check_eq "--json --version lists the schema of every document this test saw written" "" \
  "$(comm -23 <(printf '%s\n' "$written") <(jq -r '.documents[]' "$IT_TMP/version.json" | sort -u))"
check "... and this test saw some" test -n "$written"

check_schema --by-name "$IT_TMP"/json-docs/*
finish
