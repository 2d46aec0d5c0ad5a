#!/usr/bin/env bash
# vmcsum repair on real btrfs with injected damage, held against oracles nobody here wrote:
#  * the kernel's EIO (cat, dd iflag=direct, a per-sector read),
#  * the bytes a ro,rescue=ignoredatacsums mount returned BEFORE the repair (cmp),
#  * btrfs scrub (no uncorrectable error left) and btrfs check --check-data-csum (unmounted),
#  * dump-tree: the file no longer references the damaged extents, which are gone from the
#    extent tree (freed), and every file range that referenced them was rewritten,
#  * the raw device copies (btrfs-map-logical + dd) for --dry-run and refusals, lsattr for
#    --then-nocow.
# Profiles dup, raid1 (two devices) and single. Damage: different bytes on each copy (the race's
# signature; --prefer-mirror), one copy only (media, or read-repair in a file with false
# mismatches), the same bytes on the only copy (single: undetermined), a compressed extent, an
# extent shared with a snapshot. The expected content of a rewritten sector is mirror 1's bytes as
# the test wrote them (never a read through btrfs, which picks its mirror by PID).
# Files meant to carry false mismatches are written in a gap of vmcsum's kernel record (a fresh
# state directory, as for a filesystem brought from elsewhere): this host's kernel falls back to
# buffered writes, so once its record dates a file, the race is excluded and damage is media.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/repair_lib.sh"
need_root
need_loop
need_cmd jq filefrag btrfs btrfs-map-logical dd perl cmp sha256sum lsattr mkfifo timeout
: "${VMCSUM:?VMCSUM must point at the vmcsum binary}"
: "${VMCSUM_TOOLS:?VMCSUM_TOOLS must point at the test tools}"
HOLD=$VMCSUM_TOOLS/hold_open
[[ -x $HOLD ]] || skip "test tool not built: $HOLD"
"$VMCSUM" repair --help >/dev/null 2>&1 || skip "this vmcsum has no repair command"

M=1048576
K=1024

# A multi-extent image: extent A (1 MiB at 0) whose middle 256 KiB is overwritten later (extent B),
# so A is referenced by two file ranges, [0,256K) and [512K,1M); extent C (512 KiB at 1 MiB);
# extent D (256 KiB at 1.5 MiB).
make_image() { # FILE
  dd if=/dev/urandom of="$1" bs=1M count=1 status=none
  sync -f "$1"
  dd if=/dev/urandom of="$1" bs=256K count=1 seek=1 conv=notrunc status=none
  sync -f "$1"
  dd if=/dev/urandom of="$1" bs=512K count=1 seek=2 conv=notrunc status=none
  sync -f "$1"
  dd if=/dev/urandom of="$1" bs=256K count=1 seek=6 conv=notrunc status=none
  sync -f "$1"
}

# Everything a write would change, read with the filesystem unmounted: the bad logicals btrfs
# check reports, the raw copies of LOGICAL..., the extent tree. Prints one digest.
fs_state() { # LOGICAL...
  local id=$FS_ID
  unmount_btrfs "$id"
  {
    check_bad_logicals "${DEVS[0]}"
    device_copies_sha "${DEVS[0]}" "$@"
    extent_items "${DEVS[0]}"
  } >"$IT_TMP/state.$((++STATE_SEQ))"
  mount_btrfs "$id"
  drop_caches
  sha256sum <"$IT_TMP/state.$STATE_SEQ" | cut -c1-64
}
STATE_SEQ=0

# The files written next lie in a gap of the kernel record: a state directory of their own.
# read_windows INO : the read windows of inode INO in the state directory, one JSON per line.
read_windows() {
  cat "$VMCSUM_STATE_DIR"/scrub/*.json 2>/dev/null | jq -c --argjson ino "$1" '.windows[]? | select(.inode == $ino)' || true
}
# corruption_errs MNT : the sum of btrfs device stats' corruption_errs over MNT's devices.
corruption_errs() { btrfs device stats "$1" | awk '/corruption_errs/ { s += $2 } END { print s + 0 }'; }

fresh_record() {
  REC_SEQ=$((${REC_SEQ:-0} + 1))
  export VMCSUM_STATE_DIR=$IT_TMP/record.$REC_SEQ
}

# patch_ref REF OFFSET COUNT GARBAGE : the expected content after a repair from mirror 1: COUNT
# sectors at OFFSET of REF replaced by the first COUNT sectors of GARBAGE (what damage_sectors
# wrote to mirror 1).
patch_ref() {
  dd if="$4" of="$1" bs=4096 seek=$(($2 / 4096)) count="$3" conv=notrunc status=none
}

# set_header BACKUP PERL-SUBSTITUTION : edits the JSON header line of a backup in place (the
# header is not covered by the records' hashes: what a forger would change).
set_header() {
  perl -0777 -i -pe "$2" -- "$1"
}

# damaged_and_repaired NAME FILE : FILE (256 KiB, written in a gap of the kernel record) with one
# sector damaged the race's way (different bytes on each copy), repaired; BK_OF is its backup.
damaged_and_repaired() {
  fresh_record
  dd if=/dev/urandom of="$2" bs=256K count=1 status=none
  sync
  damage_sectors "$2" 4096 1 differ
  local errs0
  errs0=$(corruption_errs "$MNT")
  vrepair "$2"
  check_eq "$1: trust: ${2##*/} repaired" "repaired 0" "$(jf '.files[0].action') $RC"
  # The oracle: the kernel's own count of csum failures (btrfs device stats). The repair reads
  # the file around the sector no copy matches; the kernel's readahead read it too (an error on
  # each mirror, and log lines) until repair asked for none.
  check_eq "$1: the repair's reads made no csum error (btrfs device stats corruption_errs)" \
    "$errs0" "$(corruption_errs "$MNT")"
  BK_OF=$(jf '.files[0].backup')
}

# repair_with_backup_dir DIR FILE OFFSET : FILE damaged at OFFSET (the race's way, in a fresh
# record), then `repair --backup-dir DIR FILE`; USHA is FILE's SHA-256 before the repair.
repair_with_backup_dir() {
  fresh_record
  damage_sectors "$2" "$3" 1 differ
  USHA=$(sha_of "$2")
  set +e
  timeout -k 5 300 "$VMCSUM" --json repair --backup-dir "$1" "$2" >"$OUT" 2>"$ERR"
  RC=$?
  set -e
}

# Undo restores only what this host backed up (issue 12 #2). Each case fails on a vmcsum that
# trusted any backup it was handed; the oracle is the image's SHA-256 before and after.
undo_trust() { # NAME DIR
  local name=$1 d=$2 u=$MNT/u.raw v=$MNT/v.raw ubk forged vsha usha t0
  note "--- $name: undo restores only what this host backed up"
  fresh_record
  dd if=/dev/urandom of="$u" bs=256K count=1 status=none
  dd if=/dev/urandom of="$v" bs=256K count=1 status=none
  sync
  damage_sectors "$u" 4096 1 differ
  # A genuine vmcsum backup, but recorded in another state directory (another host): nothing
  # here vouches for it.
  VMCSUM_STATE_DIR=$IT_TMP/other-host vrepair "$u"
  check_eq "$name: trust: repair recorded elsewhere: repaired" "repaired 0" "$(jf '.files[0].action') $RC"
  ubk=$(jf '.files[0].backup')
  usha=$(sha_of "$u")
  vundo "$ubk" --force --prefer-mirror 2
  check_eq "$name: trust: a backup no repair here recorded: refused backup-not-ours, exit 3 (--force)" \
    "refused backup-not-ours 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: trust: unrecorded backup: image untouched" "$usha" "$(sha_of "$u")"

  # The issue's forgery: a backup aimed at an image never repaired (v.raw), records intact.
  forged=$d/forged.vmcsum-backup
  cp -- "$ubk" "$forged"
  set_header "$forged" "s/\"path\":\"[^\"]*\"/\"path\":\"$(printf %s "$v" | sed 's/[\/&]/\\&/g')\"/; s/\"inode\":[0-9]+/\"inode\":$(stat -c %i "$v")/"
  check "$name: trust: the forged header names v.raw" grep -aq "\"path\":\"$v\"" "$forged"
  vsha=$(sha_of "$v")
  vundo "$forged" --force --prefer-mirror 2
  check_eq "$name: trust: forged backup: refused backup-not-ours, exit 3" "refused backup-not-ours 3" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: trust: forged backup: v.raw untouched (sha256)" "$vsha" "$(sha_of "$v")"

  # Records outside the header's ranges: refused whatever the options, before anything else.
  cp -- "$ubk" "$forged"
  set_header "$forged" 's/"ranges":\[\[[0-9]+,[0-9]+\]/"ranges":[[262144,4096]/'
  vundo "$forged" --force
  check_eq "$name: trust: records outside the header's ranges (--force): refused bad-backup, exit 3" \
    "refused bad-backup 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check "$name: trust: the reason says outside the ranges" jq -e '.files[0].reason | test("outside")' "$OUT"
  check_eq "$name: trust: records outside: image untouched" "$usha" "$(sha_of "$u")"

  # A recorded backup whose image was replaced by a FIFO: never opened for writing, no hang.
  fresh_record
  damage_sectors "$u" 8192 1 differ
  vrepair "$u"
  check_eq "$name: trust: u.raw repaired again, recorded here" "repaired 0" "$(jf '.files[0].action') $RC"
  ubk=$(jf '.files[0].backup')
  mv -- "$u" "$u.away"
  mkfifo -- "$u"
  t0=$SECONDS
  vundo "$ubk" --force
  check_eq "$name: trust: header naming a FIFO: refused not-regular, exit 3" "refused not-regular 3" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check "$name: trust: FIFO: no hang" test $((SECONDS - t0)) -lt 60
  rm -f -- "$u"
  mv -- "$u.away" "$u"

  # The backup names the image's canonical path; a directory on it swapped for a symlink since
  # (what a user who owns that directory can do) must not send the restore elsewhere, --force or
  # not: the path is resolved with no symlink followed anywhere (the old undo followed it and
  # wrote the backed-up bytes into the file the symlink led to).
  local sub=$MNT/undo-sub other=$MNT/undo-other w wbk wsha osha
  mkdir -p -- "$sub" "$other"
  w=$sub/w.raw
  damaged_and_repaired "$name" "$w"
  wbk=$BK_OF
  # The file elsewhere holds what the repair left (so nothing but the path tells it apart): the
  # old undo --force wrote the backed-up bad bytes into it.
  cp --reflink=never -- "$w" "$other/w.raw"
  sync
  osha=$(sha_of "$other/w.raw")
  mv -- "$sub" "$sub.real"
  ln -s -- "$other" "$sub"
  vundo "$wbk" --force --prefer-mirror 2 # copy 2's bytes: not what the repair wrote (copy 1's)
  check_eq "$name: trust: a directory on the path swapped for a symlink: refused not-regular, exit 3 (--force)" \
    "refused not-regular 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check "$name: trust: the reason names the symlink" jq -e '.files[0].reason | test("symlink")' "$OUT"
  check_eq "$name: trust: the file the symlink leads to is untouched" "$osha" "$(sha_of "$other/w.raw")"
  rm -f -- "$sub"
  mv -- "$sub.real" "$sub"
  # Another inode with two links at the image's name (a hard link to a file someone could not
  # write): --force restores into a replaced image (one link, as `set` leaves it), never there.
  wsha=$(sha_of "$w")
  mv -- "$w" "$w.away"
  ln -- "$other/w.raw" "$w"
  vundo "$wbk" --force --prefer-mirror 2
  check_eq "$name: trust: a hard link at the image's name: refused different-file, exit 3 (--force)" \
    "refused different-file 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: trust: the hard-linked file is untouched" "$osha" "$(sha_of "$other/w.raw")"
  rm -f -- "$w"
  mv -- "$w.away" "$w"
  check_eq "$name: trust: w.raw as the repair left it" "$wsha" "$(sha_of "$w")"
  rm -rf -- "$sub" "$other"

  # In a directory others may rename in (group writable, no sticky bit: a shared pool), another
  # inode at the image's name can be any file they moved there, root's own included: --force
  # restores only into the inode backed up there (the old undo restored into whatever one-link
  # file it found).
  local shared=$MNT/undo-shared g gbk gsha
  mkdir -p -- "$shared"
  chmod 2775 -- "$shared"
  g=$shared/g.raw
  damaged_and_repaired "$name" "$g"
  gbk=$BK_OF
  mv -- "$g" "$g.old"
  cp --reflink=never -- "$g.old" "$g"
  sync
  gsha=$(sha_of "$g")
  vundo "$gbk" --force --prefer-mirror 2
  check_eq "$name: trust: another inode in a directory others may rename in: refused different-file (--force)" \
    "refused different-file 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: trust: that file is untouched" "$gsha" "$(sha_of "$g")"
  rm -rf -- "$shared"

  # A backup directory below a directory others may write (no sticky bit): they could move it
  # away and the backups --undo needs with it (the old repair took it).
  local ww=$IT_TMP/ww
  mkdir -p -- "$ww"
  chmod 0777 -- "$ww"
  repair_with_backup_dir "$ww/bk" "$u" 16384
  usha=$USHA
  check_eq "$name: trust: a backup dir below a world-writable directory: refused backup-dir, exit 3" \
    "refused backup-dir 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check "$name: trust: the reason names the directory above" jq -e --arg w "$ww" '.files[0].reason | contains($w)' "$OUT"
  check_eq "$name: trust: below a world-writable directory: image untouched" "$usha" "$(sha_of "$u")"
  rm -rf -- "$ww"

  # Two images that give one backup name (the same base name and inode number, in two
  # subvolumes, repaired in the same second): two backups, each restoring its own image (the old
  # repair renamed the second over the first).
  local s1=$MNT/undo-s1 s2=$MNT/undo-s2 bk1 bk2 sha1 sha2
  btrfs subvolume create "$s1" >/dev/null
  btrfs subvolume create "$s2" >/dev/null
  fresh_record
  dd if=/dev/urandom of="$s1/disk.img" bs=256K count=1 status=none
  dd if=/dev/urandom of="$s2/disk.img" bs=256K count=1 status=none
  sync
  check_eq "$name: trust: both disk.img have one inode number" "$(stat -c %i "$s1/disk.img")" "$(stat -c %i "$s2/disk.img")"
  damage_sectors "$s1/disk.img" 4096 1 differ
  damage_sectors "$s2/disk.img" 4096 1 differ
  vrepair "$s1/disk.img" "$s2/disk.img"
  check_eq "$name: trust: both disk.img repaired" "repaired repaired 0" \
    "$(jf -r '[.files[].action] | join(" ")') $RC"
  bk1=$(jf -r '.files[0].backup')
  bk2=$(jf -r '.files[1].backup')
  check_fails "$name: trust: two backups, two names" test "$bk1" == "$bk2"
  check "$name: trust: backup 1 exists" test -f "$bk1"
  check "$name: trust: backup 2 exists" test -f "$bk2"
  sha1=$(sha_of "$s1/disk.img")
  sha2=$(sha_of "$s2/disk.img")
  vundo "$bk1" -n
  check_eq "$name: trust: backup 1 restores s1's image" "$s1/disk.img" "$(jf -r '.files[0].path')"
  vundo "$bk2" -n
  check_eq "$name: trust: backup 2 restores s2's image" "$s2/disk.img" "$(jf -r '.files[0].path')"
  check_eq "$name: trust: dry runs changed nothing" "$sha1 $sha2" "$(sha_of "$s1/disk.img") $(sha_of "$s2/disk.img")"
  btrfs subvolume delete "$s1" "$s2" >/dev/null

  # Backups only go to a directory nobody else can write.
  local open_bk=$IT_TMP/open-backup
  mkdir -p -- "$open_bk"
  chmod 1777 -- "$open_bk"
  repair_with_backup_dir "$open_bk" "$u" 12288
  usha=$USHA
  check_eq "$name: trust: a world-writable backup dir: refused backup-dir, exit 3" "refused backup-dir 3" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: trust: world-writable backup dir: nothing in it" 0 "$(find "$open_bk" -type f | wc -l)"
  check_eq "$name: trust: world-writable backup dir: image untouched" "$usha" "$(sha_of "$u")"
  rm -f -- "$u" "$v"
}

# --- redundant profiles ---------------------------------------------------------------------------
run_redundant() { # NAME NDEV mkfs-args...
  local name=$1 ndev=$2
  shift 2
  local t0=$SECONDS d=$IT_TMP/$name
  mkdir -p "$d"
  rm -rf -- "${BK:?}"/* "$BK"/.[!.]* 2>/dev/null || true
  make_btrfs --devices "$ndev" -- "$@"
  fresh_record
  local f=$MNT/vm.raw m=$MNT/media.raw
  make_image "$f"
  dd if=/dev/urandom of="$m" bs=256K count=1 status=none
  sync
  local ino
  ino=$(stat -c %i "$f")
  extent_refs "$f" >"$d/refs.before"
  check_eq "$name: fixture: 4 extents, A referenced twice" "5 4" \
    "$(wc -l <"$d/refs.before") $(cut -d' ' -f2 "$d/refs.before" | sort -u | wc -l)"

  cp -- "$f" "$d/orig"
  cp -- "$f" "$d/ref"
  damage_sectors "$f" 8192 2 differ # extent A, first range
  patch_ref "$d/ref" 8192 2 "$LAST_GARBAGE"
  local -a all_bad=("${DAMAGED[@]}")
  damage_sectors "$f" $((M + 64 * K)) 1 differ # extent C
  patch_ref "$d/ref" $((M + 64 * K)) 1 "$LAST_GARBAGE"
  all_bad+=("${DAMAGED[@]}")
  damage_sectors "$f" $((M + 512 * K + 8 * K)) 1 one:2 # extent D: one copy only
  local d_logical=${DAMAGED[0]}
  damage_sectors "$m" 4096 1 one:1 # a file with nothing else bad: media
  local m_logical=${DAMAGED[0]}

  damaged_extents "$d/refs.before" "${all_bad[@]}" >"$d/extents"
  local -a ext_bytenrs
  mapfile -t ext_bytenrs < <(cut -d' ' -f1 "$d/extents")
  ranges_of "$d/refs.before" "${ext_bytenrs[@]}" >"$d/ranges.want"
  check_eq "$name: fixture: damage in extents A and C, 3 file ranges" \
    "0 262144,524288 524288,1048576 524288" "$(paste -sd, "$d/ranges.want")"

  # The reference ($d/ref): the original, mirror 1's bytes where no copy matches, the good copy
  # (the original) where one does.
  check_fails "$name: before: whole-file read fails (EIO)" reads_ok "$f"
  check "$name: before: EIO at 8192" eio_at "$f" 8192

  note "--- $name: dry run"
  local st0 st1
  st0=$(fs_state "${all_bad[@]}" "$d_logical" "$m_logical")
  vrepair -n "$f" "$m"
  check_eq "$name: dry run: exit 2, dry_run" "2 true" "$RC $(jf .dry_run)"
  check_eq "$name: dry run: vm.raw would-repair" would-repair "$(jfile vm.raw .action)"
  check_eq "$name: dry run: no backup written" 0 "$(backup_count)"
  st1=$(fs_state "${all_bad[@]}" "$d_logical" "$m_logical")
  check_eq "$name: dry run: devices, csum errors and extent tree unchanged" "$st0" "$st1"
  check_eq "$name: dry run: no read window recorded (it reads nothing through btrfs)" "" "$(read_windows "$ino")"

  note "--- $name: in use"
  "$HOLD" --write --direct --ready "$d/r1" "$f" &
  local hp=$!
  bg_track "$hp"
  wait_file "$d/r1"
  vrepair "$f"
  check_eq "$name: open by a process: refused in-use, exit 3" "refused in-use 3" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  kill "$hp"
  wait "$hp" 2>/dev/null || true
  bg_untrack "$hp"
  "$HOLD" --qemu-locks --ready "$d/r2" "$f" &
  hp=$!
  bg_track "$hp"
  wait_file "$d/r2"
  vrepair "$f"
  check_eq "$name: QEMU locks: refused, exit 3" "refused 3" "$(jf '.files[0].action') $RC"
  check "$name: QEMU locks: code in-use or locked" jq -e '.files[0].code | IN("in-use", "locked")' "$OUT"
  kill "$hp"
  wait "$hp" 2>/dev/null || true
  bg_untrack "$hp"
  check_eq "$name: refusals: no backup written" 0 "$(backup_count)"
  st1=$(fs_state "${all_bad[@]}" "$d_logical" "$m_logical")
  check_eq "$name: refusals: nothing changed" "$st0" "$st1"

  if [[ -n $ONE_TASK_CG ]]; then
    # No thread may start (a pids.max or RLIMIT_NPROC reached), or only some: scrub reads and
    # hashes on the threads it has; its findings and exit status are those it gives with all of
    # them (the oracle of the findings themselves: the repair's checks below, and btrfs scrub
    # and check after it). Tasks allowed: 1 (vmcsum alone: it reads and hashes), 3 (a device's
    # two readers, which then hash too; raid1's second device read by vmcsum), 4 (and one hasher,
    # which hashes what vmcsum reads of raid1's second device). The per-copy pass only: a read
    # through btrfs would repair media.raw's bad copy (the repair's one-task run below reads
    # through the kernel).
    local s_rc=0 o_rc tasks r0
    local -a scrub=(--json scrub --no-progress --no-history --no-kernel-pass "$f" "$m")
    local findings='[.summary, .files[]]'
    "$VMCSUM" "${scrub[@]}" >"$d/scrub.threads" 2>/dev/null || s_rc=$?
    for tasks in 1 3 4; do
      note "--- $name: scrub with $tasks task(s) allowed"
      task_limit "$tasks"
      r0=$(one_task_refused)
      o_rc=0
      in_one_task "${VMCSUM_REAL:-$VMCSUM}" "${scrub[@]}" >"$d/scrub.$tasks" 2>"$d/scrub.$tasks.err" || o_rc=$?
      check "$name: $tasks task(s): the cgroup refused some of scrub's threads" \
        test "$(one_task_refused)" -gt "${r0:-0}"
      check_eq "$name: $tasks task(s): scrub's exit status and findings as with threads" \
        "$s_rc $(jq -c "$findings" "$d/scrub.threads")" "$o_rc $(jq -c "$findings" "$d/scrub.$tasks")"
      check_eq "$name: $tasks task(s): nothing on stderr" "" "$(cat "$d/scrub.$tasks.err")"
    done
    task_limit 1
    check_eq "$name: scrub found the damage (exit 2)" 2 "$s_rc"
  fi

  note "--- $name: repair"
  local t_rep
  t_rep=$(date +%s%6N)
  if [[ $name == dup && -n $ONE_TASK_CG ]]; then
    # The dup repair with one task only: the read-back runs before the check scrub instead of
    # beside it; every check below holds as for raid1's repair with threads.
    note "($name: repair with one task only)"
    r0=$(one_task_refused)
    VREPAIR_RUN=("${ONE_TASK[@]}" "${VMCSUM_REAL:-$VMCSUM}")
    vrepair "$f" "$m"
    VREPAIR_RUN=("$VMCSUM")
    check "$name: one task: the cgroup refused repair's threads" test "$(one_task_refused)" -gt "${r0:-0}"
    check_eq "$name: one task: nothing on stderr" "" "$(cat "$ERR")"
  else
    vrepair "$f" "$m"
  fi
  cp -- "$OUT" "$d/repair.json"
  check_eq "$name: exit 1 (media sector left to btrfs)" 1 "$RC"
  # The repair's own reads through btrfs (the read repair of extent D's sector, the backup, the
  # read-back) are a read window in the state directory, so the kernel log lines they cause
  # are vmcsum's (scrub --history, audit), not alarms that outlive the repair. The log lines
  # themselves come from dmesg; the kernel ratelimits them, so their number is only noted.
  local win
  win=$(read_windows "$ino" | tail -n 1)
  note "$name: the repair's read window: $win"
  covers() { jq -e --argjson off "$1" 'any(.ranges[]; .[0] <= $off and $off < .[0] + .[1])' <<<"$win" >/dev/null; }
  check "$name: state: a read window of vm.raw covering the read-repaired sector" covers $((M + 512 * K + 8 * K))
  check_fails "$name: ... not the sectors rewritten from a device copy (never read through btrfs)" covers 8192
  check_fails "$name: ... nor extent C's" covers $((M + 64 * K))
  check "$name: ... naming this filesystem's devices only (as the kernel log names them)" \
    jq -e --arg d "${DEVS[0]##*/}" '(.devices | index($d) != null) and (.devices | length) >= 1' <<<"$win"
  "$VMCSUM" --json scrub --no-progress --history --no-kernel-pass "$f" >"$d/history.json" 2>/dev/null || true
  local own
  own=$(jq -c --argjson ino "$ino" --argjson t "$t_rep" \
    '[.history[] | select(.ino == $ino and .root == 5 and .first_timestamp_us >= $t)]' "$d/history.json")
  note "$name: kernel log lines of vm.raw since the repair began: $(jq length <<<"$own")"
  check_eq "$name: each of them caused by vmcsum's own reads" "[]" \
    "$(jq -c '[.[] | select(.caused_by_vmcsum | not)]' <<<"$own")"
  check_eq "$name: schema, not a dry run" "vmcsum.repair/1 false 1" \
    "$(jf '"\(.schema) \(.dry_run) \(.exit_code)"')"
  check_eq "$name: vm.raw repaired, 4 bad sectors found" "repaired 4" \
    "$(jfile vm.raw '"\(.action) \(.bad_sectors)"')"
  check_eq "$name: the sectors whose copies differ rewritten from mirror 1" \
    "8192 rewritten 1 false false-mismatch,12288 rewritten 1 false false-mismatch,1114112 rewritten 1 false false-mismatch" \
    "$(jfile vm.raw '[.repaired[] | select(.offset != 1581056)] | sort_by(.offset) | map("\(.offset) \(.how) \(.mirror) \(.copies_identical) \(.class)") | join(",")')"
  check_eq "$name: the one-copy sector of vm.raw repaired too (false mismatch by the file's evidence)" \
    "1581056 false-mismatch" "$(jfile vm.raw '[.repaired[] | select(.offset == 1581056) | "\(.offset) \(.class)"] | join(",")')"
  jfile vm.raw '.ranges[] | "\(.offset) \(.length)"' | sort -n >"$d/ranges.got"
  check_eq "$name: every file range of the damaged extents rewritten" "" \
    "$(comm -23 <(sort "$d/ranges.want") <(sort "$d/ranges.got") | paste -sd,)"
  check_eq "$name: old extents freed" "[true]" "$(jfile vm.raw '[.ranges[] | select(.offset < 1572864) | .freed] | unique')"
  check_eq "$name: verified through the kernel" "true true" "$(jfile vm.raw '"\(.verify.readable) \(.verify.matches)"')"
  check_eq "$name: media.raw left, skipped as media" "left media" \
    "$(jfile media.raw '"\(.action) \([.skipped[].code] | join(","))"')"
  check "$name: media: the reason says btrfs scrub" jq -e '[.files[] | select(.path | endswith("/media.raw"))][0].skipped[0].reason | test("btrfs scrub")' "$OUT"
  local bkname
  bkname=$(jfile vm.raw '.backup // "" | split("/") | last')
  check "$name: backup named <name>.<inode>.<UTC>.vmcsum-backup" \
    is_backup_name "$bkname" vm.raw "$ino"
  check "$name: backup in --backup-dir, complete" backup_complete "$BK/$bkname"
  check_eq "$name: no pending backup left" "" "$(pending)"

  if [[ -S /run/systemd/journal/socket ]] && command -v journalctl >/dev/null; then
    sleep 0.5 # journald writes asynchronously
    check "$name: a journal line names the image and its backup" \
      journal_has_repair "$(readlink -f "$f")" "$bkname"
  else
    note "$name: no systemd journal here: the journal line is not checked"
  fi
  check "$name: after: the whole file reads without EIO" reads_ok "$f"
  check "$name: after: content = the original, mirror 1 where no copy matched" cmp -- "$d/ref" "$f"
  check_eq "$name: after: every sector reads, as before" "" "$(sector_scan "$f" "$d/ref")"
  extent_refs "$f" >"$d/refs.after"
  check_eq "$name: after: the damaged extents are no longer referenced" "" \
    "$(awk 'NR == FNR { bad[$1] = 1; next } ($2 in bad) { print }' "$d/extents" "$d/refs.after")"
  local rc=0
  "$VMCSUM" --json scrub --no-progress --no-history "$f" >"$d/scrub.after" 2>/dev/null || rc=$?
  check_eq "$name: after: vmcsum scrub finds nothing" "0 0" "$rc $(jq '[.files[].bad[]] | length' "$d/scrub.after")"
  check_eq "$name: after: btrfs scrub finds nothing uncorrectable" 0 "$(btrfs_scrub_uncorrectable "$MNT")"
  unmount_btrfs
  check_eq "$name: after: btrfs check --check-data-csum is clean" "" "$(check_bad_logicals "${DEVS[0]}")"
  check_eq "$name: after: the damaged extents are gone from the extent tree" "" \
    "$(extent_items "${DEVS[0]}" | grep -xFf "$d/extents" || true)"
  mount_btrfs
  drop_caches

  note "--- $name: undo"
  check "$name: the backup is format 2" test "$(head -n1 "$BK/$bkname")" == "vmcsum-repair-backup 2"
  # Format 2 keeps a copy of the bad sectors only: the backup is far smaller than the ranges.
  check "$name: the backup holds no copy of the rewritten ranges" \
    test "$(stat -c %s "$BK/$bkname")" -lt "$(jfile vm.raw '.rewritten_bytes')"
  # Guest writes inside the rewritten ranges: sector 25, which the repair wrote back unchanged
  # (the backup keeps only its digest), and sector 2, a bad sector the repair rewrote from copy 1
  # (the backup keeps its copies). Undo cannot put sector 25 back: refused not-in-backup,
  # --force or not, whichever changed sector comes first in the backup.
  local s25
  s25=$(bytes_at "$f" $((25 * 4096)) 4096)
  cp -- "$f" "$d/before-change"
  dd if=/dev/urandom of="$f" bs=4K count=1 seek=25 conv=notrunc status=none
  dd if=/dev/urandom of="$f" bs=4K count=1 seek=2 conv=notrunc status=none
  sync -f "$f"
  local changed
  changed=$(sha_of "$f")
  check_fails "$name: sector 25 changed" test "$s25" == "$(bytes_at "$f" $((25 * 4096)) 4096)"
  vundo "$BK/$bkname"
  check_eq "$name: undo of a changed file: refused not-in-backup, exit 3" "refused not-in-backup 3" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: undo refused: file untouched" "$changed" "$(sha_of "$f")"
  vundo "$BK/$bkname" --force
  check_eq "$name: undo --force of bytes the backup has no copy of: refused not-in-backup, exit 3" \
    "refused not-in-backup 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: undo --force refused: file untouched" "$changed" "$(sha_of "$f")"
  # Sector 25 put back by hand: only the bad sector differs, which the backup holds; undo
  # refuses it as changed, and --force restores it.
  dd if="$d/before-change" of="$f" bs=4K count=1 skip=25 seek=25 conv=notrunc status=none
  sync -f "$f"
  changed=$(sha_of "$f")
  check_eq "$name: sector 25 back as the repair left it" "$s25" "$(bytes_at "$f" $((25 * 4096)) 4096)"
  check_fails "$name: sector 2 differs from what the repair wrote" cmp -s -- "$d/ref" "$f"
  vundo "$BK/$bkname"
  check_eq "$name: undo of a changed bad sector: refused changed, exit 3" "refused changed 3" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: undo refused: file untouched" "$changed" "$(sha_of "$f")"
  vundo "$BK/$bkname" --force -n
  check_eq "$name: undo --force -n: would-restore, dry run" "would-restore true" "$(jf '"\(.files[0].action) \(.dry_run)"')"
  check_eq "$name: undo --force -n: file untouched" "$changed" "$(sha_of "$f")"
  # Another process holds a read lease on the image: the open for writing fails at once
  # (refused in-use) instead of waiting out lease-break-time (45 s) first.
  "$HOLD" --lease --ready "$d/r3" "$f" &
  hp=$!
  bg_track "$hp"
  wait_file "$d/r3"
  local t0=$SECONDS
  vundo "$BK/$bkname" --force
  check_eq "$name: undo with a read lease held: refused in-use, exit 3, within 10 s" \
    "refused in-use 3 1" "$(jf '.files[0] | "\(.action) \(.code)"') $RC $((SECONDS - t0 < 10))"
  check_eq "$name: undo refused: file untouched" "$changed" "$(sha_of "$f")"
  kill "$hp"
  wait "$hp" 2>/dev/null || true
  bg_untrack "$hp"
  # The image's place taken by a FIFO with a writer blocked in open(2): undo refuses it and never
  # opens it (the writer still waits).
  mv -- "$f" "$f.away"
  mkfifo "$f"
  timeout 30 sh -c 'echo x >"$1"' sh "$f" 2>/dev/null &
  local fw=$!
  bg_track "$fw"
  sleep 0.2
  vundo "$BK/$bkname" --force
  check_eq "$name: undo onto a FIFO: refused not-regular, the FIFO never opened" \
    "refused not-regular waiting" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $(kill -0 "$fw" 2>/dev/null && echo waiting || echo woken)"
  kill "$fw" 2>/dev/null || true
  wait "$fw" 2>/dev/null || true
  bg_untrack "$fw"
  rm -f -- "$f"
  mv -- "$f.away" "$f"
  vundo "$BK/$bkname" --force
  check_eq "$name: undo --force: restored, exit 0" "restored 0" "$(jf '.files[0].action') $RC"
  check_eq "$name: undo: verified" "true true" "$(jf '"\(.files[0].verify.readable) \(.files[0].verify.matches)"')"
  check "$name: undo: content = as repaired before" cmp -- "$d/ref" "$f"
  check "$name: undo: reads without EIO" reads_ok "$f"

  note "--- $name: copies differ: default rule and --prefer-mirror"
  local p=$MNT/p.raw q=$MNT/q.raw g1 g2 h1 h2
  fresh_record
  dd if=/dev/urandom of="$p" bs=256K count=1 status=none
  dd if=/dev/urandom of="$q" bs=256K count=1 status=none
  sync
  damage_sectors "$p" 4096 2 one:1
  g1=$(sha256sum <"$LAST_GARBAGE" | cut -c1-64)
  damage_sectors "$p" 4096 2 one:2
  g2=$(sha256sum <"$LAST_GARBAGE" | cut -c1-64)
  damage_sectors "$q" 4096 2 one:1
  h1=$(sha256sum <"$LAST_GARBAGE" | cut -c1-64)
  damage_sectors "$q" 4096 2 one:2
  h2=$(sha256sum <"$LAST_GARBAGE" | cut -c1-64)
  ign_read "$p" "$d/ref.p"
  if [[ $name == dup ]]; then
    check_eq "$name: ignoredatacsums returns mirror 1" "$g1" "$(bytes_at "$d/ref.p" 4096 8192)"
  fi
  vrepair "$p"
  check_eq "$name: p.raw: repaired, exit 0" "repaired 0" "$(jf '.files[0].action') $RC"
  check_eq "$name: p.raw: copies not identical, mirror 1 chosen" '["1 false"]' \
    "$(jf -c '[.files[0].repaired[] | "\(.mirror) \(.copies_identical)"] | unique')"
  check_eq "$name: p.raw: content = copy 1" "$g1" "$(bytes_at "$p" 4096 8192)"
  check_eq "$name: p.raw: the good sectors kept" "$(bytes_at "$d/ref.p" 16384 245760)" "$(bytes_at "$p" 16384 245760)"
  local bkp
  bkp=$(jf '.files[0].backup')
  # The bytes written are the bytes compared (issue 12 #2): copy 2 is not what the file holds, so
  # without --force it is refused like any other difference, and nothing is written.
  local psha
  psha=$(sha_of "$p")
  vundo "$bkp" --prefer-mirror 2
  check_eq "$name: p.raw: undo --prefer-mirror 2, copy 2 not in the file: refused changed, exit 3" \
    "refused changed 3" "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: p.raw: undo --prefer-mirror 2 refused: file untouched" "$psha" "$(sha_of "$p")"
  check "$name: p.raw: ... the reason says the file is as the repair left it, and --force writes copy 2" \
    jq -e '.files[0].reason | test("is as the repair left it") and test("--force writes copy 2")' "$OUT"
  vundo "$bkp" --force --prefer-mirror 2
  check_eq "$name: p.raw: undo --force --prefer-mirror 2: restored" "restored 0" "$(jf '.files[0].action') $RC"
  check_eq "$name: p.raw: undo --force --prefer-mirror 2 writes copy 2" "$g2" "$(bytes_at "$p" 4096 8192)"
  vundo "$bkp" --force
  check_eq "$name: p.raw: undo writes the chosen copy back" "$g1" "$(bytes_at "$p" 4096 8192)"
  check "$name: p.raw: reads without EIO" reads_ok "$p"
  cp -- "$p" "$p.new"
  mv -- "$p.new" "$p" # same bytes, another inode: not the file the backup was taken of
  vundo "$bkp"
  check_eq "$name: p.raw replaced: undo refused different-file, exit 3" "refused different-file 3" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  vundo "$bkp" --force --prefer-mirror 2
  check_eq "$name: p.raw replaced: undo --force restores" "restored 0 $g2" \
    "$(jf '.files[0].action') $RC $(bytes_at "$p" 4096 8192)"

  vrepair --prefer-mirror 2 "$q"
  check_eq "$name: q.raw: --prefer-mirror 2: repaired, mirror 2" "repaired 0 [2]" \
    "$(jf '.files[0].action') $RC $(jf -c '[.files[0].repaired[].mirror] | unique')"
  check_eq "$name: q.raw: content = copy 2" "$h2" "$(bytes_at "$q" 4096 8192)"
  check_fails "$name: q.raw: not copy 1" test "$h1" == "$(bytes_at "$q" 4096 8192)"
  check "$name: q.raw: reads without EIO" reads_ok "$q"

  if [[ $name == dup ]]; then
    undo_trust "$name" "$d"
  fi

  note "--- $name: NOCOW copies that differ are left, never called clean"
  # What scrub reports as critical (divergent NODATASUM data) repair cannot decide without a
  # checksum: the image is left with the range listed (exit 1), and nothing is written: the
  # two copies on the devices (read below btrfs) are the same before and after.
  local nc=$MNT/nocow-div.raw nc_logical nc_before
  fresh_record
  touch "$nc"
  chattr +C "$nc"
  dd if=/dev/urandom of="$nc" bs=256K count=1 conv=notrunc status=none
  sync
  damage_sectors "$nc" 8192 1 one:2
  nc_logical=${DAMAGED[0]}
  nc_before=$(device_copies_sha "${DEVS[0]}" "$nc_logical")
  rc=0
  "$VMCSUM" --json scrub --no-progress --no-history "$nc" >"$d/div.scrub.json" 2>/dev/null || rc=$?
  check_eq "$name: nocow: scrub: one divergent range at 8192, exit 2" "8192 2" \
    "$(jq -r '[.files[0].divergent[].offset] | join(",")' "$d/div.scrub.json") $rc"
  local mode
  for mode in dry-run real from; do
    case $mode in
      dry-run) vrepair -n "$nc" ;;
      real) vrepair "$nc" ;;
      from) vrepair --from "$d/div.scrub.json" ;; # the scrub document lists the range
    esac
    check_eq "$name: nocow ($mode): left, the range skipped as divergent, exit 1" \
      "left 8192:divergent 1" "$(jf '.files[0] | "\(.action) \([.skipped[] | "\(.offset):\(.code)"] | join(","))"') $RC"
  done
  check_eq "$name: nocow: both copies unchanged (device reads)" "$nc_before" \
    "$(device_copies_sha "${DEVS[0]}" "$nc_logical")"

  note "--- $name: --from a saved scrub document"
  local fr=$MNT/from.raw
  fresh_record
  dd if=/dev/urandom of="$fr" bs=512K count=1 status=none
  sync
  cp -- "$fr" "$d/ref.from"
  damage_sectors "$fr" 65536 3 differ
  patch_ref "$d/ref.from" 65536 3 "$LAST_GARBAGE"
  rc=0
  "$VMCSUM" --json scrub --no-progress --no-history --no-kernel-pass "$fr" >"$d/scrub.json" 2>/dev/null || rc=$?
  check_eq "$name: --from: the scrub found 3 sectors" "2 3" "$rc $(jq '[.files[].bad[]] | length' "$d/scrub.json")"
  vrepair --from "$d/scrub.json"
  check_eq "$name: --from, no path: every file of the document repaired" "1 repaired 3 0" \
    "$(jf '.files | length') $(jf '.files[0] | "\(.action) \(.repaired | length)"') $RC"
  check "$name: --from: content = the original, mirror 1 where damaged" cmp -- "$d/ref.from" "$fr"
  vrepair --from - <"$d/scrub.json"
  check_eq "$name: --from - (stdin), sectors good now: re-verified, clean, exit 0" "clean 0" \
    "$(jf '.files[0].action') $RC"

  if [[ $name == dup ]]; then
    note "--- $name: snapshot sharing the damaged extent"
    btrfs subvolume create "$MNT/vol" >/dev/null
    local s=$MNT/vol/s.raw
    fresh_record
    dd if=/dev/urandom of="$s" bs=512K count=1 status=none
    sync
    cp -- "$s" "$d/ref.s"
    damage_sectors "$s" 4096 1 differ
    patch_ref "$d/ref.s" 4096 1 "$LAST_GARBAGE"
    btrfs subvolume snapshot -r "$MNT/vol" "$MNT/snap" >/dev/null
    sync
    vrepair "$s"
    check_eq "$name: snapshot: repaired in the image, exit 1 (shared extent left)" "repaired 1" \
      "$(jf '.files[0].action') $RC"
    check "$name: snapshot: the range names what shares it, not freed" \
      jq -e '.files[0].ranges | length > 0 and all(.[]; (.shared_with | length > 0) and .freed != true)' "$OUT"
    check "$name: snapshot: the image reads without EIO" reads_ok "$s"
    check "$name: snapshot: image content = the original, mirror 1 where damaged" cmp -- "$d/ref.s" "$s"
    check "$name: snapshot: the snapshot's file still has the old extent (EIO)" eio_at "$MNT/snap/s.raw" 4096

    note "--- $name: compressed extent"
    local c=$MNT/comp.raw cl
    touch "$c"
    btrfs property set "$c" compression zstd
    head -c 1M < <(yes "compressible text for zstd, vmcsum repair") >"$c"
    sync
    cl=$(filefrag -v -b4096 "$c" | awk '/encoded/ { gsub(/[.:]/, " "); print $4 * 4096; exit }')
    if [[ -n $cl ]]; then
      unmount_btrfs
      head -c 4096 /dev/urandom >"$d/garbage.c"
      while read -r _ dv ph; do
        dd if="$d/garbage.c" of="$dv" bs=4096 count=1 seek="$ph" oflag=seek_bytes,direct conv=notrunc,fsync status=none
      done < <(copies_of "$cl" "${DEVS[0]}")
      mount_btrfs
      drop_caches
      vrepair "$c"
      check_eq "$name: compressed: left, skipped as compressed, exit 1" "left compressed 1" \
        "$(jf '.files[0] | "\(.action) \([.skipped[].code] | unique | join(","))"') $RC"
    else
      note "$name: comp.raw has no encoded extent; compressed case not run"
    fi

    note "--- $name: file name that is not UTF-8"
    local u=$MNT/$'bad\xff.raw'
    fresh_record
    dd if=/dev/urandom of="$u" bs=256K count=1 status=none
    sync
    damage_sectors "$u" 0 1 differ
    vrepair "$u"
    check "$name: non-UTF-8 name: the document is valid JSON" jq -e . "$OUT"
    check_eq "$name: non-UTF-8 name: repaired, exit 0" "repaired 0" "$(jf '.files[0].action') $RC"
    check_eq "$name: non-UTF-8 name: path_is_utf8 false, the name escaped" 'false bad\xff.raw' \
      "$(jf '.files[0] | "\(.path_is_utf8) \(.path | split("/") | last)"')"
    check "$name: non-UTF-8 name: reads without EIO" reads_ok "$u"
    local sj
    sj=$("$VMCSUM" --json scrub --no-progress --no-history "$u" 2>/dev/null || true)
    check_eq "$name: non-UTF-8 name: scrub's path_is_utf8 false" false "$(jq -r '.files[0].path_is_utf8' <<<"$sj")"
    vrepair --then-nocow "$u"
    check_eq "$name: --then-nocow on dup: clean, NOCOW skipped as not worthwhile, exit 1" \
      "clean skipped not-worthwhile 1" "$(jf '.files[0] | "\(.action) \(.nocow.action) \(.nocow.code)"') $RC"
    check_fails "$name: --then-nocow on dup: no C attribute" has_nocow_attr "$u"

    note "--- $name: an image named like a backup temp file keeps its backup (issue 12, item 3)"
    local tn=$MNT/.vmcsum-backup.tmp-x
    fresh_record
    dd if=/dev/urandom of="$tn" bs=256K count=1 status=none
    sync
    damage_sectors "$tn" 4096 1 differ
    vrepair "$tn"
    check_eq "$name: .vmcsum-backup.tmp-x: repaired, exit 0" "repaired 0" "$(jf '.files[0].action') $RC"
    check "$name: .vmcsum-backup.tmp-x: the backup the document names exists, complete" \
      backup_complete "$(jf '.files[0].backup')"

    note "--- $name: a directory stands for the images below it"
    mkdir -p "$MNT/dir/sub"
    local dd1=$MNT/dir/sub/a.raw dd2=$MNT/dir/b.raw
    fresh_record
    dd if=/dev/urandom of="$dd1" bs=256K count=1 status=none
    dd if=/dev/urandom of="$dd2" bs=256K count=1 status=none
    sync
    cp -- "$dd1" "$d/ref.dir"
    damage_sectors "$dd1" 8192 1 differ
    patch_ref "$d/ref.dir" 8192 1 "$LAST_GARBAGE"
    vrepair "$MNT/dir"
    check_eq "$name: directory: both files, a.raw repaired, b.raw clean, exit 0" "2 repaired clean 0" \
      "$(jf '.files | length') $(jfile a.raw .action) $(jfile b.raw .action) $RC"
    check "$name: directory: a.raw = the original, mirror 1 where damaged" cmp -- "$d/ref.dir" "$dd1"

    note "--- $name: bad input"
    echo "not on btrfs" >"$IT_TMP/plain.raw"
    mkfifo "$MNT/fifo"
    vrepair "$MNT/missing.raw"
    check_eq "$name: missing path: exit 3" 3 "$RC"
    check "$name: missing path: a clear message" grep -q 'missing.raw' "$ERR"
    vrepair "$IT_TMP/plain.raw"
    check_eq "$name: non-btrfs path: exit 3" "3 refused" "$RC $(jf '.files[0].action')"
    vrepair "$MNT/fifo"
    check_eq "$name: FIFO: exit 3, never blocks" "3 refused" "$RC $(jf '.files[0].action')"
    vrepair
    check_eq "$name: no path and no --from: usage, exit 64" 64 "$RC"
    set +e
    timeout 60 "$VMCSUM" --json repair --from "$IT_TMP/plain.raw" >/dev/null 2>&1
    rc=$?
    set -e
    check_eq "$name: --from a file that is not a scrub document: usage, exit 64" 64 "$rc"
  fi
  note "$name: $((SECONDS - t0)) s"
}

# --- single: one copy, nothing decides -> undetermined ---------------------------------------------
run_single() {
  local name=single t0=$SECONDS d=$IT_TMP/single
  mkdir -p "$d"
  rm -rf -- "${BK:?}"/* 2>/dev/null || true
  make_btrfs -- -d single -m single
  fresh_record
  local f=$MNT/vm.raw g=$MNT/nocow.raw
  make_image "$f"
  dd if=/dev/urandom of="$g" bs=256K count=2 status=none
  sync
  damage_sectors "$f" 8192 2 all
  local garbage=$LAST_GARBAGE
  damage_sectors "$g" 4096 1 all
  ign_read "$f" "$d/ref"
  ign_read "$g" "$d/ref.g"
  check_eq "$name: ignoredatacsums read = the only copy's bytes" \
    "$(sha256sum <"$garbage" | cut -c1-64)" "$(bytes_at "$d/ref" 8192 8192)"

  vrepair "$f"
  check_eq "$name: undetermined left without --include-undetermined, exit 1" "left undetermined 1" \
    "$(jf '.files[0] | "\(.action) \([.skipped[].code] | unique | join(","))"') $RC"
  check "$name: still EIO (nothing written)" eio_at "$f" 8192

  vrepair --include-undetermined "$f"
  check_eq "$name: --include-undetermined: repaired, exit 0" "repaired 0" "$(jf '.files[0].action') $RC"
  check_eq "$name: rewritten from the only copy" '["rewritten 1 undetermined"]' \
    "$(jf -c '[.files[0].repaired[] | "\(.how) \(.mirror) \(.class)"] | unique')"
  check "$name: content = ignoredatacsums read before" cmp -- "$d/ref" "$f"
  check "$name: reads without EIO" reads_ok "$f"
  local rc=0
  "$VMCSUM" --json scrub --no-progress --no-history "$f" >/dev/null 2>&1 || rc=$?
  check_eq "$name: vmcsum scrub exit 0" 0 "$rc"

  note "--- $name: --then-nocow"
  vrepair --include-undetermined --then-nocow "$g"
  check_eq "$name: --then-nocow: repaired, exit 0" "repaired 0" "$(jf '.files[0].action') $RC"
  check_eq "$name: --then-nocow: converted" rewritten "$(jf '.files[0].nocow.action')"
  check "$name: --then-nocow: lsattr shows C" has_nocow_attr "$g"
  check "$name: --then-nocow: content = ignoredatacsums read before" cmp -- "$d/ref.g" "$g"
  check_eq "$name: btrfs scrub finds nothing uncorrectable" 0 "$(btrfs_scrub_uncorrectable "$MNT")"
  unmount_btrfs
  check_eq "$name: btrfs check --check-data-csum is clean" "" "$(check_bad_logicals "${DEVS[0]}")"
  mount_btrfs
  note "--- $name: no space (last: a small single filesystem filled up stays short of metadata)"
  local h=$MNT/h.raw
  fresh_record
  dd if=/dev/urandom of="$h" bs=256K count=2 status=none
  sync
  damage_sectors "$h" 4096 1 all
  dd if=/dev/urandom of="$MNT/fill" bs=1M status=none 2>/dev/null || true
  sync
  local before nbk
  before=$(extent_refs "$h" | sha256sum)
  nbk=$(backup_count)
  vrepair --include-undetermined "$h"
  check_eq "$name: full filesystem: refused no-space, exit 3" "refused no-space 3" \
    "$(jf '.files[0] | "\(.action) \(.code)"') $RC"
  check_eq "$name: no-space: nothing changed, no backup" "$before $nbk" "$(extent_refs "$h" | sha256sum) $(backup_count)"
  check "$name: no-space: still EIO" eio_at "$h" 4096
  rm -f -- "$MNT/fill"
  note "$name: $((SECONDS - t0)) s"
}

# --- --then-nocow converts the image the repair held, not what its path names by then ----------
# Every image is repaired first, then converted one after the other. While the first (large) one
# is being converted, its directory is swapped for a symlink to another directory holding a file
# of the same name (a security review's attack: a user's directory, root's file elsewhere). The
# second conversion must refuse (changed), and neither the decoy nor the real file is converted
# (lsattr is the oracle).
run_then_nocow_swap() {
  local name=then-nocow-swap
  make_btrfs --size 1536 -- -d single -m single
  mkdir "$MNT/tn" "$MNT/other"
  dd if=/dev/urandom of="$MNT/tn/a.raw" bs=1M count=384 status=none
  dd if=/dev/urandom of="$MNT/tn/b.raw" bs=1M count=1 status=none
  dd if=/dev/urandom of="$MNT/other/b.raw" bs=1M count=1 status=none
  sync
  (
    for ((i = 0; i < 3000; i++)); do
      if compgen -G "$MNT/tn/.a.raw.vmcsum-tmp.*" >/dev/null; then
        mv "$MNT/tn" "$MNT/tn.real" && ln -s other "$MNT/tn" && echo swapped >"$IT_TMP/swapped"
        exit 0
      fi
      sleep 0.01
    done
  ) &
  local w=$!
  bg_track "$w"
  vrepair --then-nocow "$MNT/tn/a.raw" "$MNT/tn/b.raw"
  wait "$w" 2>/dev/null || true
  bg_untrack "$w"
  check_eq "$name: the directory was swapped during the first conversion" swapped "$(cat "$IT_TMP/swapped" 2>/dev/null)"
  check_eq "$name: the first image converted" "clean rewritten" \
    "$(jf '.files[0] | "\(.action) \(.nocow.action)"')"
  check_eq "$name: the second refused: changed, exit 3" "refused changed 3" \
    "$(jf '.files[1].nocow | "\(.action) \(.code)"') $RC"
  check_fails "$name: the decoy the path names now is not converted" has_nocow_attr "$MNT/other/b.raw"
  check_fails "$name: the second image is not converted either" has_nocow_attr "$MNT/tn.real/b.raw"
  check "$name: the first image is NOCOW (where it is now)" has_nocow_attr "$MNT/tn.real/a.raw"
}

one_task_cgroup || note "SKIP scrub and repair with one task only: no pids cgroup controller can be used here"
run_redundant dup 1 -d dup -m dup
run_redundant raid1 2 -d raid1 -m raid1
run_single
run_then_nocow_swap
check_schema --by-name "$DOCS"/*
finish
