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

has_open() { # PID PATH: whether PID has PATH open
  local l
  for l in /proc/"$1"/fd/*; do
    [[ $(readlink "$l" 2>/dev/null) == "$2" ]] && return 0
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

check_schema --by-name "$IT_TMP"/json-docs/*
finish
