#!/usr/bin/env bash
# vmcsum scrub --history: the kernel log's checksum events resolved to files, held against
#  * btrfs inspect-internal inode-resolve (root+inode lines, BTRFS_IOC_INO_PATHS) and
#    logical-resolve (logical-only lines, BTRFS_IOC_LOGICAL_INO), on a loop btrfs with a file in
#    the top-level subvolume, one in a second subvolume (not mounted by itself) and a deleted one;
#  * a text log of lines in the 5.15, 6.1, 6.6 and 6.18 formats (docs/kernel-facts.md §2),
#  * real lines: a damaged sector read (the kernel's own EIO) and `btrfs scrub`, from /dev/kmsg,
#    checked against dmesg,
#  * earlier boots from a journal built by systemd-journal-remote from the export format
#    (--journal-dir), checked against journalctl on the same journal.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq filefrag btrfs btrfs-map-logical dd dmesg
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

D=$IT_TMP/t
mkdir -p "$D/nojournal"
make_btrfs -- -d single -m dup
DEV=$(basename "${DEVS[0]}")
# Loop devices are reused: other tests' lines name the same device and low inode numbers
# (257...). Push ours higher so old lines cannot pass for ours.
mkdir "$MNT/pad"
for i in $(seq 1 60); do : >"$MNT/pad/$i"; done
dd if=/dev/urandom of="$MNT/a.raw" bs=1M count=1 status=none
btrfs subvolume create "$MNT/sub" >/dev/null
for i in $(seq 1 30); do : >"$MNT/sub/pad$i"; done
dd if=/dev/urandom of="$MNT/sub/b.raw" bs=1M count=1 status=none
dd if=/dev/urandom of="$MNT/gone.raw" bs=64K count=1 status=none
sync
ROOT_SUB=$(btrfs inspect-internal rootid "$MNT/sub")
INO_A=$(stat -c %i "$MNT/a.raw")
INO_B=$(stat -c %i "$MNT/sub/b.raw")
INO_GONE=$(stat -c %i "$MNT/gone.raw")
L_A=$(file_logical "$MNT/a.raw" 8192)
L_B=$(file_logical "$MNT/sub/b.raw" 4096)
rm "$MNT/gone.raw"
sync
btrfs filesystem sync "$MNT"
note "a.raw root 5 ino $INO_A logical $L_A; sub/b.raw root $ROOT_SUB ino $INO_B logical $L_B; gone ino $INO_GONE"

# The oracles: btrfs-progs' own resolution. logical-resolve (progs 6.2) cannot name files of a
# subvolume that is not mounted by itself ("subvol sub could not be accessed: not mounted"), so a
# logical goes through -P (inode, root), subvolid-resolve and inode-resolve.
oracle_logical() { # LOGICAL ; prints the first path, or nothing
  local inode _o root rest sub
  read -r _ inode _ _o _ root rest < <(btrfs inspect-internal logical-resolve -P "$1" "$MNT" 2>/dev/null) || return 0
  [[ $inode =~ ^[0-9]+$ && $root =~ ^[0-9]+$ ]] || return 0
  sub=$MNT
  if ((root != 5)); then
    sub=$MNT/$(btrfs inspect-internal subvolid-resolve "$root" "$MNT" 2>/dev/null) || return 0
  fi
  btrfs inspect-internal inode-resolve "$inode" "$sub" 2>/dev/null | head -n1 || true
}
ORA_A=$(btrfs inspect-internal inode-resolve "$INO_A" "$MNT")
ORA_B=$(btrfs inspect-internal inode-resolve "$INO_B" "$MNT/sub")
ORA_LA=$(btrfs inspect-internal logical-resolve "$L_A" "$MNT")
ORA_LB=$(oracle_logical "$L_B")
check_eq "oracle: logical-resolve -P names sub/b.raw's inode and subvolume" \
  "inode $INO_B offset 4096 root $ROOT_SUB" "$(btrfs inspect-internal logical-resolve -P "$L_B" "$MNT")"
check_eq "oracle: inode-resolve a.raw" "$MNT/a.raw" "$ORA_A"
check_eq "oracle: inode-resolve sub/b.raw" "$MNT/sub/b.raw" "$ORA_B"
check_eq "oracle: logical-resolve agrees with inode-resolve (a.raw)" "$ORA_A" "$ORA_LA"
check_eq "oracle: logical-resolve agrees with inode-resolve (sub/b.raw)" "$ORA_B" "$ORA_LB"
check_fails "oracle: inode-resolve of the deleted inode fails" \
  btrfs inspect-internal inode-resolve "$INO_GONE" "$MNT"

# --- 1. a text log in every format ---------------------------------------------------------------
cat >"$D/kern.log" <<EOF
[ 1234.567890] BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 8192 csum 0x47ee40e9 expected csum 0xa46f53b6 mirror 1
[ 1234.567891] BTRFS error (device $DEV): bdev /dev/$DEV errs: wr 0, rd 0, flush 0, corrupt 1, gen 0
[ 1235.000001] BTRFS warning (device $DEV): checksum error at logical $L_B on dev /dev/$DEV, physical $L_B, root $ROOT_SUB, inode $INO_B, offset 4096, length 4096, links 1 (path: b.raw)
3,812,1236000002,-;BTRFS error (device $DEV): unable to fixup (regular) error at logical $L_A on dev /dev/$DEV physical $L_A
[ 1237.000003] BTRFS warning (device $DEV state M): scrub: checksum error at logical $L_B on dev /dev/$DEV, physical $L_B root $ROOT_SUB inode $INO_B offset 4096 length 4096 links 1 (path: b.raw)
[ 1238.000004] BTRFS error (device $DEV): scrub: fixed up error at logical $L_B on dev /dev/$DEV physical $L_B
[ 1239.000005] BTRFS warning (device $DEV): csum failed root 5 ino $INO_GONE off 0 csum 0x01020304 expected csum 0x05060708 mirror 1
[ 1240.000006] BTRFS warning (device loop999): csum failed root 5 ino $INO_A off 0 csum 0x01020304 expected csum 0x05060708 mirror 1
[ 1241.000007] EXT4-fs (sda1): mounted filesystem with ordered data mode
EOF
hist() { # OUT ARGS... ; exit status in OUT.rc
  local out=$1 rc=0
  shift
  "$VMCSUM" --json scrub --history "$@" >"$out" 2>"$out.err" || rc=$?
  echo "$rc" >"$out.rc"
}
hist "$D/file.json" --kernel-log "$D/kern.log" --journal-dir "$D/nojournal"
check_eq "text log: exit 2 (uncorrected failures logged)" 2 "$(cat "$D/file.json.rc")"
# The 6.1 and 6.18 scrub lines say the same thing (same device, root, inode, offset, logical):
# merged into one event with a count (issue 19).
check_eq "text log: 6 events (dev-stats and other lines left out, repeats merged)" 6 \
  "$(jq '.history | length' "$D/file.json")"
check_eq "text log: kinds in order, counts" \
  "read-csum-failed:1 scrub-error:2 scrub-unfixable:1 scrub-fixed:1 read-csum-failed:1 read-csum-failed:1" \
  "$(jq -r '[.history[] | "\(.kind):\(.count)"] | join(" ")' "$D/file.json")"
# --kernel-log is this boot's log: its events carry this boot's id and epoch times from dmesg's
# (or /dev/kmsg's) since-boot stamps.
BOOT=$(tr -d -- '-\n' </proc/sys/kernel/random/boot_id)
check_eq "text log: all from kmsg (the text file), this boot" "[\"kmsg\"] [\"$BOOT\"]" \
  "$(jq -c '[.history[].source] | unique' "$D/file.json") $(jq -c '[.history[].boot] | unique' "$D/file.json")"
check_eq "text log: merged scrub lines keep their first and last time, 2 s apart" 2000002 \
  "$(jq '.history[1] | .last_timestamp_us - .first_timestamp_us' "$D/file.json")"
check_eq "text log: nothing there was caused by vmcsum" '[false]' \
  "$(jq -c '[.history[].caused_by_vmcsum] | unique' "$D/file.json")"
path_of() { jq -r ".history[$2].path" "$1"; }
check_eq "5.15 read line (root 5 + inode) = inode-resolve" "$ORA_A" "$(path_of "$D/file.json" 0)"
check_eq "6.1 scrub line (subvolume root + inode) = inode-resolve" "$ORA_B" "$(path_of "$D/file.json" 1)"
check_eq "6.6 logical-only line = logical-resolve" "$ORA_LA" "$(path_of "$D/file.json" 2)"
check_eq "6.18 logical-only line in the second subvolume = logical-resolve" "$ORA_LB" \
  "$(path_of "$D/file.json" 3)"
check_eq "deleted inode: no path (inode-resolve fails too)" null "$(path_of "$D/file.json" 4)"
check_eq "another device's line: no path" null "$(path_of "$D/file.json" 5)"
check_eq "fields of the 5.15 line" "5 $INO_A 8192 1 47ee40e9 a46f53b6 $DEV" \
  "$(jq -r '.history[0] | "\(.root) \(.ino) \(.offset) \(.mirror) \(.csum) \(.expected_csum) \(.device)"' "$D/file.json")"

hist "$D/sub.json" --kernel-log "$D/kern.log" --journal-dir "$D/nojournal" "$MNT/sub"
check_eq "with a path: only the events of files below it" "[\"$ORA_B\"] 2" \
  "$(jq -c '[.history[].path] | unique' "$D/sub.json") $(jq '.history | length' "$D/sub.json")"
# A file mended since: its events stay listed, and no longer alarm. b.raw's events (logged at
# boot + 1235 s, before now) are an alarm until a whole-file scrub finds it clean; then they say
# healed_by scrub and the run exits 0, not 2 until the journal forgets them.
check_eq "b.raw's events before it is scrubbed: exit 2, none healed" "2 0" \
  "$(cat "$D/sub.json.rc") $(jq '[.history[] | select(.healed_by != null)] | length' "$D/sub.json")"
"$VMCSUM" --json scrub --no-history --no-progress "$MNT/sub/b.raw" >"$D/b.scrub.json" 2>/dev/null || true
check_eq "oracle: b.raw reads whole (dd, O_DIRECT); vmcsum's scrub of it examined it, nothing bad" \
  "0 true" \
  "$(dd if="$MNT/sub/b.raw" of=/dev/null bs=1M iflag=direct status=none && echo 0 || echo 1) $(jq '.files[0].examined == true and (.files[0].bad | length) == 0' "$D/b.scrub.json")"
hist "$D/healed.json" --kernel-log "$D/kern.log" --journal-dir "$D/nojournal" "$MNT/sub"
check_eq "b.raw scrubbed clean since: its 2 events listed, healed by scrub after them, exit 0" \
  '0 2 ["scrub"] true' \
  "$(cat "$D/healed.json.rc") $(jq '.history | length' "$D/healed.json") $(jq -c '[.history[].healed_by] | unique' "$D/healed.json") $(jq '[.history[] | .healed_at_us > .last_timestamp_us] | all' "$D/healed.json")"
check_eq "the other files' events still alarm (exit 2, none healed)" "2 0" \
  "$(hist "$D/rest.json" --kernel-log "$D/kern.log" --journal-dir "$D/nojournal"; cat "$D/rest.json.rc") $(jq '[.history[] | select(.healed_by != null and (.path | tostring | contains("b.raw") | not))] | length' "$D/rest.json")"
hist "$D/a.json" --kernel-log "$D/kern.log" --journal-dir "$D/nojournal" "$MNT/a.raw"
check_eq "with a file: only its events" "[\"$ORA_A\"] 2" \
  "$(jq -c '[.history[].path] | unique' "$D/a.json") $(jq '.history | length' "$D/a.json")"

# --- 2. real lines: the kernel's EIO and btrfs scrub, read back from /dev/kmsg --------------------
# dmesg from a mark on: it keeps earlier filesystems' lines on this loop device (lib.sh).
kmsg_mark
damage_sectors "$MNT/a.raw" 8192 1 all
L_A=${DAMAGED[0]}
check "a.raw: the kernel returns EIO at 8192" \
  bash -c "! dd if='$MNT/a.raw' of=/dev/null bs=4096 count=1 skip=2 iflag=direct status=none"
btrfs scrub start -B "$MNT" >"$D/scrub.out" 2>&1 || true # exit 3: uncorrectable errors
dmesg_since >"$D/dmesg"
read_line="BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 8192 "
# The kernel ratelimits these lines (5 s, burst 10): after the other tests' failures the first
# read may go unlogged. Wait out the interval and read again, a few times.
for ((try = 0; try < 3; try++)); do
  grep -q "$read_line" "$D/dmesg" && break
  sleep 6
  dd if="$MNT/a.raw" of=/dev/null bs=4096 count=1 skip=2 iflag=direct status=none 2>/dev/null || true # EIO expected
  dmesg_since >"$D/dmesg"
done
hist "$D/kmsg.json" --journal-dir "$D/nojournal" "$MNT/a.raw"
check_eq "kmsg: exit 2" 2 "$(cat "$D/kmsg.json.rc")"
if grep -q "$read_line" "$D/dmesg"; then
  check_eq "kmsg: the read failure at 8192, resolved as inode-resolve does" "$ORA_A" \
    "$(jq -r --argjson ino "$INO_A" --arg dev "$DEV" '[.history[] | select(.kind == "read-csum-failed" and .ino == $ino and .offset == 8192 and .device == $dev and .source == "kmsg")][0].path' "$D/kmsg.json")"
else
  note "the kernel logged no read line for the EIO (ratelimited three times); not checked"
fi
n_dmesg=$(grep -c "BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 8192 " "$D/dmesg" || true)
n_ours=$(jq --argjson ino "$INO_A" --arg dev "$DEV" '[.history[] | select(.kind == "read-csum-failed" and .ino == $ino and .offset == 8192 and .device == $dev) | .count] | add // 0' "$D/kmsg.json")
# No read of a.raw happens after that dmesg, but other work on the machine can push its oldest
# lines out of the kernel's ring before vmcsum reads /dev/kmsg: vmcsum must see at least what is
# still there after it ran, and at most what was there before (equal when nothing rotated out).
dmesg_since >"$D/dmesg.after"
n_after=$(grep -c "BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 8192 " "$D/dmesg.after" || true)
((n_after == n_dmesg)) || note "the kernel's ring dropped $((n_dmesg - n_after)) of those lines meanwhile"
check "kmsg: as many read lines as dmesg shows ($n_after <= $n_ours <= $n_dmesg)" \
  test "$n_after" -le "$n_ours" -a "$n_ours" -le "$n_dmesg"
if grep -q "checksum error at logical [0-9]* on dev /dev/$DEV, physical [0-9]*,\? root 5,\? inode $INO_A" "$D/dmesg"; then
  check_eq "kmsg: btrfs scrub's checksum error line resolved to a.raw" "$ORA_A" \
    "$(jq -r --argjson ino "$INO_A" '[.history[] | select(.kind == "scrub-error" and .ino == $ino)][0].path' "$D/kmsg.json")"
else
  note "btrfs scrub printed no path line (ratelimited); not checked"
fi
# Logical-only scrub lines name the 64 KiB stripe start (docs/kernel-facts.md §2.2): each must resolve
# to what logical-resolve says of that address.
hist "$D/kmsg_all.json" --journal-dir "$D/nojournal"
jq -r --arg dev "$DEV" '.history[] | select(.device == $dev and .ino == null and .logical != null) | "\(.logical) \(.path)"' \
  "$D/kmsg_all.json" | sort -u >"$D/logical_only"
check "kmsg: btrfs scrub's logical-only lines are there" test -s "$D/logical_only"
while read -r logical path; do
  want=$(oracle_logical "$logical")
  check_eq "kmsg: logical $logical = logical-resolve" "${want:-null}" "$path"
done <"$D/logical_only"

# --- 3. earlier boots: a journal file from the export format -------------------------------------
JR=/lib/systemd/systemd-journal-remote
[[ -x $JR ]] || JR=$(command -v systemd-journal-remote || true)
if [[ -z $JR || ! -x $JR ]] || ! command -v journalctl >/dev/null; then
  note "SKIP journal part: systemd-journal-remote (package systemd-journal-remote) or journalctl missing"
else
  this_boot=$(tr -d - </proc/sys/kernel/random/boot_id)
  b1=0123456789abcdef0123456789abcdef
  b2=fedcba9876543210fedcba9876543210
  entry() { # BOOT REALTIME TRANSPORT MESSAGE
    printf '__REALTIME_TIMESTAMP=%s\n__MONOTONIC_TIMESTAMP=%s\n_BOOT_ID=%s\n_TRANSPORT=%s\n' \
      "$2" "$((RANDOM + 1000))" "$1" "$3"
    printf 'PRIORITY=4\nSYSLOG_IDENTIFIER=kernel\n_HOSTNAME=vmcsum-test\nMESSAGE=%s\n\n' "$4"
  }
  {
    entry $b1 1700000000000001 kernel "BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 8192 csum 0x47ee40e9 expected csum 0xa46f53b6 mirror 1"
    entry $b1 1700000000000002 kernel "BTRFS error (device $DEV): bdev /dev/$DEV errs: wr 0, rd 0, flush 0, corrupt 1, gen 0"
    entry $b1 1700000000000003 kernel "usb 1-1: new high-speed USB device number 2 using xhci_hcd"
    entry $b2 1700000100000004 kernel "BTRFS warning (device $DEV): scrub: checksum error at logical $L_B on dev /dev/$DEV, physical $L_B root $ROOT_SUB inode $INO_B offset 4096 length 4096 links 1 (path: b.raw)"
    entry $b2 1700000100000005 kernel "BTRFS error (device $DEV): unable to fixup (regular) error at logical $L_B on dev /dev/$DEV physical $L_B"
    entry $b2 1700000100000006 syslog "BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 0 csum 0x01 expected csum 0x02 mirror 1"
    entry "$this_boot" 1700000200000007 kernel "BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 4096 csum 0x01020304 expected csum 0x05060708 mirror 1"
  } >"$D/export"
  mkdir -p "$D/journal"
  check "systemd-journal-remote builds the journal" \
    "$JR" --output="$D/journal/remote.journal" "$D/export"
  # oracle: journalctl's view of the kernel-transport csum lines of other boots
  journalctl -D "$D/journal" _TRANSPORT=kernel -o json --no-pager 2>/dev/null |
    jq -r --arg b "$this_boot" 'select(._BOOT_ID != $b) | select(.MESSAGE | test("csum failed|checksum error|fixup|fixed up")) | "\(._BOOT_ID) \(.__REALTIME_TIMESTAMP)"' >"$D/journal.oracle"
  check_eq "oracle: journalctl sees 3 csum lines of other boots" 3 "$(wc -l <"$D/journal.oracle")"
  for where in "$D/journal" "$D/journal/remote.journal"; do
    hist "$D/j.json" --kernel-log '' --journal-dir "$where"
    check_eq "journal ($where): exit 2" 2 "$(cat "$D/j.json.rc")"
    check_eq "journal ($where): boots and timestamps = journalctl's" "$(cat "$D/journal.oracle")" \
      "$(jq -r '.history[] | select(.source == "journal") | "\(.boot) \(.timestamp_us)"' "$D/j.json")"
    check_eq "journal ($where): paths = inode-resolve/logical-resolve" "$ORA_A $ORA_B $ORA_LB" \
      "$(jq -r '[.history[].path] | join(" ")' "$D/j.json")"
    check_eq "journal ($where): this boot's entry left to kmsg" 0 \
      "$(jq '[.history[] | select(.offset == 4096 and .kind == "read-csum-failed")] | length' "$D/j.json")"
  done
  hist "$D/jmiss.json" --kernel-log '' --journal-dir "$D/no-such-dir"
  check "journal: a missing directory is a note, not a failure" \
    jq -e '(.notes | any(test("no-such-dir"))) and (.history | length == 0)' "$D/jmiss.json"
  check_schema scrub "$D/j.json" "$D/jmiss.json"
fi
check_schema scrub "$D/file.json" "$D/sub.json" "$D/healed.json" "$D/rest.json" "$D/a.json" "$D/kmsg.json" "$D/kmsg_all.json"

# --- a reused device name: events of the filesystem that had it before are not this one's -------
# The log binds the name to a filesystem (device scan, first mount); an event only belongs to the
# filesystem its device stood for when it was logged. Our fsid is btrfs's own (filesystem show).
FSID=$(btrfs filesystem show "$MNT" | awk '/uuid:/ {print $NF; exit}')
OTHER=0c0ffee0-0000-4000-8000-000000000001
cat >"$D/reuse.log" <<EOF
[ 2000.000001] BTRFS: device fsid $OTHER devid 1 transid 6 /dev/$DEV (7:99) scanned by mkfs.btrfs (1)
[ 2000.000002] BTRFS info (device $DEV): first mount of filesystem $OTHER
[ 2000.000003] BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 12288 csum 0x01020304 expected csum 0x05060708 mirror 1
[ 2001.000001] BTRFS: device fsid $FSID devid 1 transid 6 /dev/$DEV (7:99) scanned by mkfs.btrfs (2)
[ 2001.000002] BTRFS info (device $DEV): first mount of filesystem $FSID
[ 2001.000003] BTRFS warning (device $DEV): csum failed root 5 ino $INO_A off 16384 csum 0x01020304 expected csum 0x05060708 mirror 1
EOF
hist "$D/reuse.json" --kernel-log "$D/reuse.log" --journal-dir "$D/nojournal" "$MNT/a.raw"
check_eq "reused device: only the event logged after our filesystem took the name is a.raw's" \
  "16384" "$(jq -r '[.history[] | select(.path != null) | .offset] | join(" ")' "$D/reuse.json")"
rc=0
"$VMCSUM" --json audit --kernel-log "$D/reuse.log" --libvirt-dir "$D/nojournal" --libvirt-run-dir "$D/nojournal" \
  --pve-dir "$D/nojournal" "$MNT/a.raw" >"$D/reuse.audit.json" 2>/dev/null || rc=$?
check_eq "reused device: audit counts only our filesystem's event" "[16384]" \
  "$(jq -c '.images[0].logged_offsets' "$D/reuse.audit.json")"
check_schema scrub "$D/reuse.json"

finish
