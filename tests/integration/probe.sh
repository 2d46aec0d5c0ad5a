#!/usr/bin/env bash
# shellcheck disable=SC2016 # jq programs and sh -c scripts are single-quoted on purpose
# vmcsum probe on real btrfs with the host kernel: what an O_DIRECT write really does, measured
# with the btrfs_ordered_extent_add tracepoint (and the race method), on single and dup data
# profiles; audit --probe using the measurement; and that nothing is left behind: no tracefs
# instance, no scratch inode (dump-tree after unmount), no new mount, global tracing untouched,
# also when vmcsum is interrupted by SIGINT while its instance exists.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq unshare fsfreeze findmnt env
keep_json_documents # every --json document is validated at the end (tests/schema)
: "${VMCSUM:?}" "${VMCSUM_TOOLS:?}"
grep -qw tracefs /proc/filesystems || skip "this kernel has no tracefs (uml_probe covers the race method)"

# Shell code that mounts tracefs on /sys/kernel/tracing unless it is mounted there already
# (perf, for one, mounts it on the host; mounting it again there fails: EBUSY).
MOUNT_TRACEFS='awk '"'"'$5 == "/sys/kernel/tracing" { for (i = 6; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } }
  END { exit t == "tracefs" ? 0 : 1 }'"'"' /proc/self/mountinfo || mount -t tracefs nodev /sys/kernel/tracing'
# Runs shell code in a mount namespace of its own with tracefs mounted, so the test can look
# at the instances without mounting anything on the host.
tracefs_do() {
  unshare -m --propagation slave sh -c "$MOUNT_TRACEFS"' || exit 1
    cd /sys/kernel/tracing && eval "$1"' sh "$1"
}
# without_tracefs CMD... : CMD in a mount namespace of its own where no tracefs is mounted, as on
# a host that never mounted it (whatever this host has: the unmounts stay in the namespace).
without_tracefs() {
  unshare -m --propagation slave sh -c '
    for m in $(awk '"'"'{ for (i = 6; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "tracefs") print $5; break } }'"'"' /proc/self/mountinfo); do
      umount -l "$m" || exit 1
    done
    exec "$@"' sh "$@"
}
tracefs_do 'test -d events/btrfs/btrfs_ordered_extent_add' ||
  skip "no btrfs:btrfs_ordered_extent_add tracepoint in this kernel"

# Everything global that the probe must leave as it was.
tracing_state() {
  tracefs_do 'cat tracing_on current_tracer set_event buffer_size_kb \
    events/btrfs/btrfs_ordered_extent_add/enable events/btrfs/btrfs_ordered_extent_add/filter'
  findmnt -rn -t tracefs -o TARGET || true
}
# Instances vmcsum-probe-PID-N whose vmcsum is gone: left behind. A live PID's instance belongs to
# a vmcsum still running beside this test (another probe on a shared host), not to one of ours.
our_instances() {
  local name pid
  for name in $(tracefs_do 'ls instances' | grep '^vmcsum-probe-' || true); do
    pid=${name#vmcsum-probe-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || printf '%s\n' "$name"
  done
}
# Inode items in the default subvolume's tree, read offline (the filesystem must be unmounted).
inode_items() { btrfs inspect-internal dump-tree -t 5 "$1" | grep -cE 'item [0-9]+ key \([0-9]+ INODE_ITEM 0\) itemoff' || true; }
orphans() { btrfs inspect-internal dump-tree -t 1 "$1" | grep -c 'ORPHAN' || true; }
field() { jq -r --arg m "$2" ".filesystems[] | select(.mount == \$m) | $3" <<<"$1"; }

# What the issue expects on this machine's kernel (6.18.44; 7.0 and later alike). On another
# kernel the measurement is compared with the version table instead.
release=$(uname -r)
new_kernel=0
if [[ $release =~ ^([0-9]+)\.([0-9]+)\.?([0-9]*) ]]; then
  maj=${BASH_REMATCH[1]} min=${BASH_REMATCH[2]} pat=${BASH_REMATCH[3]:-0}
  if ((maj > 6 || (maj == 6 && min == 18 && pat >= 44))); then
    new_kernel=1
  fi
fi

state_before=$(tracing_state)

# --- single data profile ---------------------------------------------------------------------
make_btrfs --size 512 -d single -m dup
S=$MNT S_ID=$FS_ID S_DEV=${DEVS[0]}
mkdir "$S/images"
unmount_btrfs "$S_ID"
s_inodes=$(inode_items "$S_DEV")
mount_btrfs "$S_ID"

J=$(without_tracefs "$VMCSUM" --json probe "$S/images") && rc=0 || rc=$?
check_eq "probe of single exits 0" 0 "$rc"
check "probe JSON is valid and versioned" jq -e '.schema == "vmcsum.probe/1"' <<<"$J"
check_eq "single: one filesystem" 1 "$(jq '.filesystems | length' <<<"$J")"
check_eq "single: method" tracefs "$(field "$J" "$S" .method)"
check_eq "single: data profile" single "$(field "$J" "$S" .data_profile)"
check_eq "single: scratch files went into the named directory" "$S/images" "$(field "$J" "$S" .scratch_dir)"
if ((new_kernel)); then
  check_eq "6.18: checksummed -> buffered-fallback" buffered-fallback "$(field "$J" "$S" .checksummed)"
  check_eq "6.18: NOCOW on single -> direct" direct "$(field "$J" "$S" .nocow)"
else
  note "kernel $release: comparing with the version table"
fi
check_eq "single: agrees with the version table" true "$(field "$J" "$S" .agrees_with_version_table)"
check "single: evidence names DIRECT ordered extents for the NOCOW file" \
  jq -e --arg m "$S" '[.filesystems[] | select(.mount == $m) | .evidence[] | select(test("NOCOW scratch file.*DIRECT"))] | length == 1' <<<"$J"
check_eq "single: nothing unknown" '{}' "$(field "$J" "$S" '.unknown | tostring')"

check "tracefs was not mounted here: vmcsum mounted it in a namespace of its own" \
  jq -e --arg m "$S" '[.filesystems[] | select(.mount == $m) | .notes[] | select(test("own mount namespace"))] | length == 1' <<<"$J"
# Where tracefs is mounted already (systemd does so), vmcsum uses that mount.
J=$(unshare -m --propagation slave sh -c "$MOUNT_TRACEFS"' && exec "$1" --json probe "$2"' \
  sh "$VMCSUM" "$S/images") || true
check_eq "tracefs already mounted: method" tracefs "$(field "$J" "$S" .method)"
check_eq "tracefs already mounted: used as it is" 0 \
  "$(field "$J" "$S" '[.notes[] | select(test("own mount namespace"))] | length')"

# The race method on the same filesystem: the kernel copies, so nothing goes bad.
J=$("$VMCSUM" --json probe --method race "$S/images") && rc=0 || rc=$?
check_eq "race method: exit 1 (NOCOW cannot be told by a race)" 1 "$rc"
check_eq "race method: method" race "$(field "$J" "$S" .method)"
if ((new_kernel)); then
  check_eq "race method: checksummed -> buffered-fallback" buffered-fallback "$(field "$J" "$S" .checksummed)"
fi
check_eq "race method: nocow unknown" unknown "$(field "$J" "$S" .nocow)"
check "race method: says why nocow is unknown" \
  jq -e --arg m "$S" '.filesystems[] | select(.mount == $m) | .unknown.nocow | test("no checksums")' <<<"$J"

# Where no thread may be started (a pids.max reached): the race needs one to change the buffer,
# so the answer is unknown, with the reason; no scratch file is left (checked below).
if one_task_cgroup; then
  J=$(in_one_task "${VMCSUM_REAL:-$VMCSUM}" --json probe --method race "$S/images" 2>"$IT_TMP/one.err") &&
    rc=0 || rc=$?
  check_eq "race method, one task only: exit 1, checksummed unknown" "1 unknown" \
    "$rc $(field "$J" "$S" .checksummed)"
  check "race method, one task only: says no thread could be started" \
    jq -e --arg m "$S" '.filesystems[] | select(.mount == $m) | .unknown.checksummed | test("no thread could be started")' <<<"$J"
  check "race method, one task only: the cgroup refused a thread" test "$(one_task_refused)" -gt 0
else
  note "SKIP race method with one task only: no pids cgroup controller can be used here"
fi

check_eq "no scratch file is visible" "" "$(ls -A "$S/images")"
unmount_btrfs "$S_ID"
check_eq "no scratch inode is left (dump-tree)" "$s_inodes" "$(inode_items "$S_DEV")"
check_eq "no orphan item is left" 0 "$(orphans "$S_DEV")"
mount_btrfs "$S_ID"

# --- dup data profile ------------------------------------------------------------------------
make_btrfs --size 512 -d dup -m dup
D=$MNT
J=$("$VMCSUM" --json probe "$D") && rc=0 || rc=$?
check_eq "probe of dup exits 0" 0 "$rc"
check_eq "dup: data profile" dup "$(field "$J" "$D" .data_profile)"
if ((new_kernel)); then
  check_eq "6.18: checksummed on dup -> buffered-fallback" buffered-fallback "$(field "$J" "$D" .checksummed)"
  check_eq "6.18: NOCOW on dup -> buffered-fallback" buffered-fallback "$(field "$J" "$D" .nocow)"
fi
check_eq "dup: agrees with the version table" true "$(field "$J" "$D" .agrees_with_version_table)"

# --- several paths: one probe per filesystem, problems reported, the others go on ------------
dd if=/dev/zero of="$S/images/a.raw" bs=1M count=1 status=none
J=$("$VMCSUM" --json probe "$S/images/a.raw" "$D" "$S" "$IT_TMP" "$IT_TMP/missing") && rc=0 || rc=$?
check_eq "mixed paths: exit 3 (a path is missing)" 3 "$rc"
check_eq "mixed paths: two filesystems" 2 "$(jq '.filesystems | length' <<<"$J")"
check_eq "mixed paths: both paths on single listed for it" 2 "$(field "$J" "$S" '.paths | length')"
check "mixed paths: the non-btrfs path is a problem" \
  jq -e --arg p "$IT_TMP" '.problems[] | select(.path == $p) | .reason | test("not on btrfs")' <<<"$J"
check "mixed paths: the missing path is a problem" \
  jq -e --arg p "$IT_TMP/missing" '[.problems[] | select(.path == $p)] | length == 1' <<<"$J"

# --- audit --probe uses the measurement ------------------------------------------------------
"$VMCSUM_TOOLS/hold_open" --direct --write --ready "$IT_TMP/ready" "$S/images/a.raw" &
holder=$!
bg_track "$holder"
for _ in $(seq 50); do [[ -e $IT_TMP/ready ]] && break; sleep 0.1; done
audit() {
  "$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" \
    --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$@" "$S/images/a.raw" || true
}
J=$(audit)
check_eq "audit without --probe: version table" version-table "$(jq -r .kernel.source <<<"$J")"
J=$(audit --probe)
check_eq "audit --probe: kernel.source" probe "$(jq -r .kernel.source <<<"$J")"
check "audit --probe: the policy's reason says it was measured" \
  jq -e '.kernel.dio_policy.reason | test("^measured by vmcsum probe \\(tracefs\\)")' <<<"$J"
if ((new_kernel)); then
  check "audit --probe: checksummed image open with O_DIRECT -> measured buffered fallback" \
    jq -e '.images[0].findings[] | select(.code == "dio-buffered-fallback") | .message | test("\\(measured\\)")' <<<"$J"
fi
check "audit --probe: a note tells what the probe found" \
  jq -e '[.notes[] | select(test("^probe \\(tracefs\\) of "))] | length == 1' <<<"$J"
kill "$holder"
wait "$holder" 2>/dev/null || true
bg_untrack "$holder"
rm -f "$S/images/a.raw"

# --- an instance left by a vmcsum that was killed is removed --------------------------------
sh -c 'exit 0' &
dead=$!
wait "$dead" || true
tracefs_do "mkdir instances/vmcsum-probe-$dead-1"
J=$("$VMCSUM" --json probe "$S") || true
check "a stale instance of a dead vmcsum is removed and reported" \
  jq -e --arg n "vmcsum-probe-$dead-1" '[.filesystems[0].notes[] | select(contains($n))] | length == 1' <<<"$J"

# --- SIGINT while the instance exists: the filesystem is frozen, so vmcsum blocks creating its
# first scratch file right after making its tracefs instance -------------------------------------
interrupt_while_frozen() { # METHOD WAIT_FOR_INSTANCE
  local method=$1 wait_instance=$2 pid rc=0 seen=0 i
  fsfreeze --freeze "$S"
  # Started from a script, a background job would ignore SIGINT; give it the default action.
  env --default-signal=INT "$VMCSUM" --json probe --method "$method" "$S" >"$IT_TMP/int.json" 2>"$IT_TMP/int.err" &
  pid=$!
  bg_track "$pid"
  for i in $(seq 100); do
    if ((wait_instance)); then
      [[ $(tracefs_do 'ls instances') == *"vmcsum-probe-$pid-"* ]] && { seen=1; break; }
    elif [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == D ]] && ((i >= 10)); then
      seen=1 # asleep in the kernel after a second: waiting for the frozen filesystem
      break
    fi
    sleep 0.1
  done
  kill -INT "$pid" 2>/dev/null || true
  sleep 0.3
  fsfreeze --unfreeze "$S"
  wait "$pid" || rc=$?
  bg_untrack "$pid"
  check_eq "$method: vmcsum was caught in the act" 1 "$seen"
  check_eq "$method: SIGINT ends vmcsum with status 130" 130 "$rc"
  check "$method: ... with a valid document saying interrupted" \
    jq -e '.schema == "vmcsum.probe/1" and .interrupted == true and .exit_code == 130' "$IT_TMP/int.json"
}
unmount_btrfs "$S_ID"
s_inodes=$(inode_items "$S_DEV")
mount_btrfs "$S_ID"
interrupt_while_frozen tracefs 1
check_eq "tracefs: no vmcsum instance after SIGINT" "" "$(our_instances)"
interrupt_while_frozen race 0
check_eq "no scratch file is visible after SIGINT" "images" "$(ls -A "$S")"
unmount_btrfs "$S_ID"
check_eq "no scratch inode is left after SIGINT (dump-tree)" "$s_inodes" "$(inode_items "$S_DEV")"
check_eq "no orphan item is left after SIGINT" 0 "$(orphans "$S_DEV")"
mount_btrfs "$S_ID"

# --- global state ----------------------------------------------------------------------------
check_eq "no vmcsum tracefs instance is left" "" "$(our_instances)"
check_eq "global tracing and the mount table are as they were" "$state_before" "$(tracing_state)"
check_schema --by-name "$IT_TMP"/json-docs/*
finish
