#!/usr/bin/env bash
# shellcheck disable=SC2016 # jq programs and sh -c scripts are single-quoted on purpose
# vmcsum bench on real btrfs: the shape of its JSON and that it leaves nothing behind (also when
# interrupted). Benchmarks are not timed tests: no figure is judged, only that there are figures.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq env
keep_json_documents # every --json document is validated at the end (tests/schema)
: "${VMCSUM:?}"

inode_items() { btrfs inspect-internal dump-tree -t 5 "$1" | grep -cE 'item [0-9]+ key \([0-9]+ INODE_ITEM 0\) itemoff' || true; }
orphans() { btrfs inspect-internal dump-tree -t 1 "$1" | grep -c 'ORPHAN' || true; }

make_btrfs --size 512 -d single -m dup
unmount_btrfs
inodes=$(inode_items "${DEVS[0]}")
mount_btrfs

J=$("$VMCSUM" --json bench --seconds 1 --runs 2 "$MNT") && rc=0 || rc=$?
check "exit status is 0 or 1 (1: runs did not repeat within 15%)" test "$rc" -le 1
check "JSON is valid and versioned" jq -e '.schema == "vmcsum.bench/1"' <<<"$J"
check_eq "exit_code field matches" "$rc" "$(jq .exit_code <<<"$J")"
check_eq "cases" "seq-1m rand-64k rand-4k" "$(jq -r '[.cases[].name] | join(" ")' <<<"$J")"
check_eq "block sizes" "1048576 65536 4096" "$(jq -r '[.cases[].block_size] | map(tostring) | join(" ")' <<<"$J")"
check_eq "data profile" single "$(jq -r .data_profile <<<"$J")"
check "file size is a positive number of MiB" jq -e '.file_size > 0 and .file_size % 1048576 == 0' <<<"$J"
check "every case: two runs per side, each with bytes, time and CPU" jq -e '
  all(.cases[]; all(.checksummed, .nocow;
    (.runs | length) == 2 and all(.runs[]; .bytes > 0 and .seconds > 0 and .user_seconds >= 0
      and .sys_seconds >= 0 and (.cut | type) == "boolean")
    and .throughput_bytes_per_second > 0 and (.cpu_seconds_per_gib | type) == "number"
    and (.spread.throughput | type) == "number"))' <<<"$J"
check "every case: the same bytes in every run of both kinds" jq -e '
  all(.cases[]; . as $c | all(.checksummed.runs[], .nocow.runs[]; .bytes == $c.bytes or .cut))' <<<"$J"
check "every case: a throughput ratio, a CPU ratio or null, stable, a meaning" jq -e '
  all(.cases[]; (.throughput_ratio | type) == "number"
    and ((.cpu_ratio | type) == "number" or .cpu_ratio == null)
    and (.stable | type) == "boolean" and (.meaning | test("checksummed images")))' <<<"$J"
check "a one-sentence meaning" jq -e '.meaning | test("^On this filesystem checksummed images .*NOCOW images\\.$")' <<<"$J"
check_eq "stable is false exactly when the exit status says so" "$([[ $rc == 1 ]] && echo false || echo true)" \
  "$(jq -r .stable <<<"$J")"
check "text output has the table and the sentence" \
  bash -c "'$VMCSUM' bench --seconds 0.5 --runs 1 '$MNT' | grep -q 'On this filesystem checksummed images'"

# Not btrfs: refused with a JSON error.
J=$("$VMCSUM" --json bench --seconds 0.1 "$IT_TMP") && rc=0 || rc=$?
check_eq "not btrfs: exit 3" 3 "$rc"
check "not btrfs: error document" jq -e '.schema == "vmcsum.error/1" and (.error.message | test("not on btrfs"))' <<<"$J"
rc=0
"$VMCSUM" bench --seconds 0 "$MNT" >/dev/null 2>&1 || rc=$?
check_eq "--seconds 0 is a usage error" 64 "$rc"

# SIGINT in the middle (once a scratch file is open, so vmcsum's handler is surely installed):
# the partial result as a valid document, status 130, within seconds.
has_open_below() { # PID DIR: whether PID has a file below DIR open
  local l
  for l in /proc/"$1"/fd/*; do
    [[ $(readlink "$l" 2>/dev/null) == "$2"/* ]] && return 0
  done
  return 1
}
env --default-signal=INT "$VMCSUM" --json bench --seconds 60 "$MNT" >"$IT_TMP/int.json" 2>"$IT_TMP/int.err" &
pid=$!
bg_track "$pid"
seen=0
for _ in $(seq 600); do
  has_open_below "$pid" "$MNT" && { seen=1; break; }
  sleep 0.05
done
check_eq "bench was caught with a scratch file open" 1 "$seen"
start=$SECONDS
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
bg_untrack "$pid"
check_eq "SIGINT ends bench with status 130" 130 "$rc"
check "... within 5 seconds" test $((SECONDS - start)) -le 5
check "... with a valid document saying interrupted" \
  jq -e '.schema == "vmcsum.bench/1" and .interrupted == true and .exit_code == 130' "$IT_TMP/int.json"
check "... and says so on stderr" grep -q 'interrupted by signal 2' "$IT_TMP/int.err"

check_eq "no scratch file is visible" "" "$(ls -A "$MNT")"
unmount_btrfs
check_eq "no scratch inode is left (dump-tree)" "$inodes" "$(inode_items "${DEVS[0]}")"
check_eq "no orphan item is left" 0 "$(orphans "${DEVS[0]}")"
check_schema --by-name "$IT_TMP"/json-docs/*
finish
