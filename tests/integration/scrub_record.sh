#!/usr/bin/env bash
# The kernel record dates extents, and the verdicts follow it (issue 19), on a real raid1 over two
# loop devices:
#  * `vmcsum record` writes <state>/generations/<fsid> with the generation btrfs itself reports
#    (`btrfs inspect-internal dump-super`: the superblock generation after the commit it makes);
#  * a file written in a window of the record whose kernel wrote O_DIRECT zero-copy (6.1, a boot
#    before this one) with a sector whose two copies hold different wrong bytes (the race's
#    signature) -> that sector and a sector of the same window with one bad copy are
#    false-mismatch (race-signature, same-window-as-signature, written-without-fallback);
#  * the same damage in a file written in this boot (this host's kernel falls back for
#    checksummed files on raid1) -> media, written-with-fallback: the record excludes the race;
#  * a file of the 6.1 window with one bad copy and no signature anywhere in it -> media;
#  * extent generations equal what dump-tree's EXTENT_DATA items say.
# The record of boot "a" is written by the test in vmcsum's own text format (a boot cannot be
# simulated otherwise); the current boot's entries are vmcsum's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq btrfs btrfs-map-logical filefrag
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"

make_btrfs --devices 2 --size 256 -d raid1 -m raid1
state=$VMCSUM_STATE_DIR

# The old boot's window: files written before the first record of this boot.
dd if=/dev/urandom of="$MNT/old.raw" bs=64K count=4 oflag=direct status=none
dd if=/dev/urandom of="$MNT/old_plain.raw" bs=64K count=4 oflag=direct status=none
sync
"$VMCSUM" --json record "$MNT" >"$IT_TMP/rec1.json"
check_eq "record: exit 0" 0 "$(jq .exit_code "$IT_TMP/rec1.json")"
fsid=$(jq -r '.filesystems[0].fsid' "$IT_TMP/rec1.json")
g1=$(jq -r '.filesystems[0].generation' "$IT_TMP/rec1.json")
check_eq "record: fsid is btrfs's" "$(btrfs filesystem show "$MNT" | awk '/uuid:/ {print $NF; exit}')" "$fsid"
super_gen=$(btrfs inspect-internal dump-super "${DEVS[0]}" | awk '$1 == "generation" {print $2}')
check_eq "record: generation = the superblock's after the commit" "$super_gen" "$g1"
check "record: the state file exists, mode 0600" test "$(stat -c %a "$state/generations/$fsid")" = 600
check "record: the state dir is 0700" test "$(stat -c %a "$state")" = 700
boot=$(tr -d -- '-\n' </proc/sys/kernel/random/boot_id)
check "record: this boot's entry" grep -q " $boot .* run $(uname -r)\$" "$state/generations/$fsid"
# A file named instead of the mount: the entry names the mount holding it (findmnt's target).
mkdir -p "$MNT/deep/er"
: >"$MNT/deep/er/f"
(cd "$MNT/deep" && "$VMCSUM" --json record er/f) >"$IT_TMP/rec-file.json"
check_eq "record: a relative file path is named by its mount (findmnt -T)" \
  "$(findmnt -n -o TARGET -T "$MNT/deep/er/f")" "$(jq -r '.filesystems[0].mount_point' "$IT_TMP/rec-file.json")"

# Rewrite the record: generations up to g1 were written in boot "a" by 6.1 (zero-copy O_DIRECT to
# checksummed files), and this boot starts at g1.
now=$(date +%s%6N)
printf 'vmcsum-kernel-record 1 %s\n1 %s %s boot 6.1.0-28-amd64\n%s %s %s shutdown 6.1.0-28-amd64\n%s %s %s boot %s\n' \
  "$fsid" aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "$now" "$g1" aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "$now" \
  "$g1" "$boot" "$now" "$(uname -r)" >"$state/generations/$fsid"

# This boot's window.
dd if=/dev/urandom of="$MNT/new.raw" bs=64K count=4 oflag=direct status=none
sync

# Damage: in old.raw and new.raw, sector 4 gets different bytes on each mirror (the signature)
# and sector 8 one bad copy; in old_plain.raw only one bad copy.
for f in old.raw new.raw; do
  damage_sectors "$MNT/$f" $((4 * 4096)) 1 one:1
  damage_sectors "$MNT/$f" $((4 * 4096)) 1 one:2
  damage_sectors "$MNT/$f" $((8 * 4096)) 1 one:1
done
damage_sectors "$MNT/old_plain.raw" $((8 * 4096)) 1 one:2

scrub_doc=$IT_TMP/scrub.json
rc=0
"$VMCSUM" --json scrub --no-kernel-pass --no-history "$MNT/old.raw" "$MNT/new.raw" "$MNT/old_plain.raw" >"$scrub_doc" || rc=$?
check_eq "scrub: exit 2" 2 "$rc"
check_schema scrub "$scrub_doc"
verdicts() { # FILE -> "offset class codes..." per bad sector
  jq -r --arg f "/$1" '.files[] | select(.path | endswith($f)) | .bad[] |
    "\(.offset) \(.class) \(.evidence_codes | sort | join(","))"' "$scrub_doc"
}
has_code() { jq -e --arg f "/$1" --argjson o "$2" --arg c "$3" \
  '.files[] | select(.path | endswith($f)) | .bad[] | select(.offset == $o) | .evidence_codes | index($c) != null' "$scrub_doc" >/dev/null; }
class_of() { jq -r --arg f "/$1" --argjson o "$2" \
  '.files[] | select(.path | endswith($f)) | .bad[] | select(.offset == $o) | .class' "$scrub_doc"; }

note "old.raw: $(verdicts old.raw | tr '\n' ';')"
note "new.raw: $(verdicts new.raw | tr '\n' ';')"
check_eq "old.raw: the signature sector is false-mismatch" false-mismatch "$(class_of old.raw 16384)"
check "old.raw: ... race-signature" has_code old.raw 16384 race-signature
check "old.raw: ... written-without-fallback" has_code old.raw 16384 written-without-fallback
check_eq "old.raw: one bad copy in the same window is false-mismatch" false-mismatch "$(class_of old.raw 32768)"
check "old.raw: ... same-window-as-signature" has_code old.raw 32768 same-window-as-signature
check_eq "old.raw: written_by 6.1, direct" "6.1.0-28-amd64 direct" \
  "$(jq -r '.files[] | select(.path | endswith("/old.raw")) | .bad[0].written_by | "\(.kernel) \(.dio_write)"' "$scrub_doc")"
check_eq "new.raw: the signature sector is media (written with the fallback)" media "$(class_of new.raw 16384)"
check "new.raw: ... written-with-fallback" has_code new.raw 16384 written-with-fallback
check "new.raw: ... race-signature said all the same" has_code new.raw 16384 race-signature
check_eq "new.raw: one bad copy is media" media "$(class_of new.raw 32768)"
check_eq "old_plain.raw: one bad copy, no signature: media" media "$(class_of old_plain.raw 32768)"
check_fails "old_plain.raw: ... not spread from another file" has_code old_plain.raw 32768 same-window-as-signature

# The generation of each finding = the EXTENT_DATA item's generation in dump-tree.
ino=$(stat -c %i "$MNT/new.raw")
unmount_btrfs
tree_gen=$(btrfs inspect-internal dump-tree -t 5 "${DEVS[0]}" |
  awk -v ino="$ino" '$0 ~ "key \\(" ino " EXTENT_DATA 0\\)" {getline; print $2; exit}')
mount_btrfs
check_eq "new.raw: generation = dump-tree's EXTENT_DATA generation" "$tree_gen" \
  "$(jq -r '.files[] | select(.path | endswith("/new.raw")) | .bad[0].generation' "$scrub_doc")"

# Without a record (another state dir), every window is a gap: the signature alone decides.
rc=0
"$VMCSUM" --state-dir "$IT_TMP/empty-state" --json scrub --no-kernel-pass --no-history "$MNT/new.raw" >"$IT_TMP/gap.json" || rc=$?
check_eq "no record: the signature sector is false-mismatch (write-kernel-unknown)" \
  "false-mismatch true" \
  "$(jq -r '.files[0].bad[] | select(.offset == 16384) | "\(.class) \(.evidence_codes | index("write-kernel-unknown") != null)"' "$IT_TMP/gap.json")"

# A record whose generations are ahead of the filesystem's (it was restored from a backup, or
# is a copy of another with its fsid) starts afresh, and says so: a warning and exit 1 from
# record, a note from scrub. Its only entry is a million generations beyond dump-super's.
rs=$IT_TMP/restored-state
mkdir -m 0700 "$rs" "$rs/generations"
ahead=$((super_gen + 1000000))
restored() {
  printf 'vmcsum-kernel-record 1 %s\n%s %s %s boot 6.1.0-28-amd64\n' \
    "$fsid" "$ahead" aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "$now" >"$rs/generations/$fsid"
}
restored
rc=0
"$VMCSUM" --state-dir "$rs" record "$MNT" >/dev/null 2>"$IT_TMP/restored.err" || rc=$?
check_eq "restored record: record exits 1 (a warning)" 1 "$rc"
check "restored record: the warning names the generations" \
  grep -q "warning: .*generation went backwards (from $ahead to " "$IT_TMP/restored.err"
check_eq "restored record: one entry left, this boot's" "1 $boot" \
  "$(grep -vc '^vmcsum-kernel-record' "$rs/generations/$fsid") $(awk 'NR == 2 { print $2 }' "$rs/generations/$fsid")"
restored
rc=0
"$VMCSUM" --state-dir "$rs" --json scrub --no-kernel-pass --no-history "$MNT/old_plain.raw" >"$IT_TMP/restored.json" || rc=$?
check "restored record: scrub notes that the record started afresh" \
  jq -e --arg f "$fsid" '.notes | any(startswith("kernel record of " + $f + ": its generation went backwards"))' "$IT_TMP/restored.json"
check_schema scrub "$IT_TMP/restored.json"
printf 'not a record\n' >"$rs/generations/$fsid"
rc=0
"$VMCSUM" --state-dir "$rs" --json record "$MNT" >"$IT_TMP/unreadable.json" || rc=$?
check_eq "unreadable record: exit 1, a note saying so" "1 true" \
  "$rc $(jq '.filesystems[0].note | test("saved record was unreadable")' "$IT_TMP/unreadable.json")"
rc=0
"$VMCSUM" --state-dir "$rs" --json record "$MNT" >"$IT_TMP/again.json" || rc=$?
check_eq "the record after: exit 0, no note" "0 null" "$rc $(jq '.filesystems[0].note' "$IT_TMP/again.json")"
check_schema record "$IT_TMP/unreadable.json" "$IT_TMP/again.json"

# A state directory others can write is refused, not trusted.
mkdir -m 0777 "$IT_TMP/open-state"
rc=0
"$VMCSUM" --state-dir "$IT_TMP/open-state" record "$MNT" 2>"$IT_TMP/open.err" || rc=$?
check_eq "record: a world-writable state dir is refused (exit 3)" 3 "$rc"
check "record: ... with a reason" grep -q "a state directory that others may write" "$IT_TMP/open.err"

# A new state directory below one another user owns is refused before it is made: nothing is
# left in that user's directory (ls is the oracle).
mkdir -m 0755 "$IT_TMP/nobodys"
chown nobody "$IT_TMP/nobodys"
rc=0
"$VMCSUM" --state-dir "$IT_TMP/nobodys/state" record "$MNT" 2>"$IT_TMP/nobodys.err" || rc=$?
check_eq "record: a state dir below nobody's directory is refused (exit 3), none made there" \
  "3 " "$rc $(ls -A "$IT_TMP/nobodys")"
check "record: ... with a reason" grep -q "another user could replace it" "$IT_TMP/nobodys.err"

# ... and one below another user's symlink (where it leads is theirs to change between two
# lookups): refused, nothing made where it leads.
mkdir "$IT_TMP/leads-here"
ln -s "$IT_TMP/leads-here" "$IT_TMP/nobodys-link"
chown -h nobody "$IT_TMP/nobodys-link"
rc=0
"$VMCSUM" --state-dir "$IT_TMP/nobodys-link/state" record "$MNT" 2>"$IT_TMP/link.err" || rc=$?
check_eq "record: a state dir below nobody's symlink is refused (exit 3), none made" \
  "3 " "$rc $(ls -A "$IT_TMP/leads-here")"
check "record: ... naming the symlink" grep -q "below the symlink $IT_TMP/nobodys-link of uid" "$IT_TMP/link.err"

# ... and one below root's own symlink to root's directory inside nobody's (nobody can move it
# away and put one of theirs there): judged where it leads, before it is made.
mkdir "$IT_TMP/nobodys/roots"
ln -s "$IT_TMP/nobodys/roots" "$IT_TMP/roots-link"
rc=0
"$VMCSUM" --state-dir "$IT_TMP/roots-link/state" record "$MNT" 2>"$IT_TMP/rlink.err" || rc=$?
check_eq "record: a new state dir through root's symlink into nobody's directory: refused, none made" \
  "3 " "$rc $(ls -A "$IT_TMP/nobodys/roots")"

# A new state directory in one with a default ACL for another user holds no ACL (getfacl is the
# oracle): what vmcsum keeps there is root's alone, the files it makes later too.
if command -v setfacl >/dev/null && mkdir "$IT_TMP/acl" && setfacl -d -m u:nobody:rwx "$IT_TMP/acl" 2>/dev/null; then
  "$VMCSUM" --state-dir "$IT_TMP/acl/state" record "$MNT" >/dev/null 2>&1 || true
  check_eq "record: the state dir made in a directory with a default ACL has none" "" \
    "$(getfacl -cp "$IT_TMP/acl/state" "$IT_TMP/acl/state/generations/$fsid" "$IT_TMP/acl/state/generations/$fsid.lock" 2>&1 | grep nobody)"
  check "record: ... and its record and lock were written" \
    test -s "$IT_TMP/acl/state/generations/$fsid" -a -e "$IT_TMP/acl/state/generations/$fsid.lock"
else
  note "SKIP default-ACL state dir: setfacl missing or ACLs unsupported on $IT_TMP"
fi

finish
