#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# uml_race: the real O_DIRECT false-checksum bug, reproduced in a user-mode-linux 6.1 guest.
#
# Makes a dup-profile race image with uml_make_race_image (uml_lib.sh), then checks it on the host
# with tools that are independent of vmcsum:
#   - btrfs check --check-data-csum lists at least one data csum mismatch, and nothing else;
#   - as root, read-only on a loop device: nocow_file (NOCOW control) reads back whole, csum_file
#     fails with EIO exactly on the blocks that btrfs check found bad on both copies, and every
#     bad logical address lies inside csum_file's extents, none inside nocow_file's.
# Exit: 0 pass, 1 fail, 77 skip (no UML here, or the guest kernel no longer has the bug).
# Env: VMCSUM_TOOLS (directory holding dio_race; set by ctest), plus uml_lib.sh's UML_* knobs.

set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=uml_lib.sh
. "$here/uml_lib.sh"

passed=0
failed=0
pass() {
  echo "PASS: $*"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}
skip() {
  echo "SKIP: $*"
  exit 77
}
finish() {
  echo "uml_race: $passed passed, $failed failed"
  ((failed == 0)) && exit 0
  exit 1
}

work=""
loop=""
mnt=""
# Removes exactly what this script made: its mount, its loop device and its files. (The guest
# is uml_run's business: its traps stop linux.uml and remove its scratch directories.)
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  if [[ -n $mnt ]] && mountpoint -q "$mnt"; then
    umount "$mnt" || umount -l "$mnt"
  fi
  if [[ -n $loop ]]; then
    btrfs device scan --forget "$loop" >/dev/null 2>&1
    losetup -d "$loop"
  fi
  if [[ -n $work ]]; then
    rm -rf -- "$work"
  fi
  mnt=""
  loop=""
  work=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for cmd in mkfs.btrfs btrfs; do
  command -v "$cmd" >/dev/null 2>&1 || skip "$cmd not found (btrfs-progs)"
done
if [[ -z ${VMCSUM_TOOLS-} ]]; then
  skip "VMCSUM_TOOLS is not set (run through ctest, or point it at the build's tests/tools)"
fi
if [[ ! -x $VMCSUM_TOOLS/dio_race ]]; then
  fail "$VMCSUM_TOOLS/dio_race is missing or not executable (build target dio_race)"
  finish
fi
reason=$(uml_available) || skip "$reason"

work=$(mktemp -d "${TMPDIR:-/tmp}/uml_race.XXXXXX") || {
  fail "cannot create a work directory"
  finish
}
img=$work/race.img
race_mib=8

# --- 1. the guest writes csum_file and nocow_file while their buffer changes ---
# In the foreground, so that Ctrl-C reaches uml_run, which stops the guest at once. A TERM sent
# to this script alone is handled when the guest is done (at most UML_TIMEOUT seconds).
UML_RACE_MIB=$race_mib uml_make_race_image "$img" 256 dup >"$work/make.log" 2>&1
rc=$?
sed 's/^/  guest: /' "$work/make.log"
if ((rc != 0)); then
  fail "uml_make_race_image failed with status $rc (see the guest output above)"
  finish
fi
pass "guest wrote csum_file and nocow_file with racing O_DIRECT writes"

# --- 2. oracle: btrfs check reads every copy of every checksummed block ---
btrfs check --check-data-csum "$img" >"$work/check.log" 2>&1
check_rc=$?
# stderr: "mirror 2 bytenr 72302592 csum 0x498cf137 expected csum 0x5c6c577c", one line per bad
# copy (btrfs-progs check/main.c, check_extent_csums())
awk '$1 == "mirror" && $3 == "bytenr" { print $4, $2 }' "$work/check.log" |
  sort -k1,1n -k2,2n -u >"$work/bad_copies"
awk '{ print $1 }' "$work/bad_copies" | uniq >"$work/bad_blocks"
n_bad=$(wc -l <"$work/bad_blocks")
n_mirror1=$(awk '$2 == 1' "$work/bad_copies" | wc -l)
n_mirror2=$(awk '$2 == 2' "$work/bad_copies" | wc -l)
# Bad on both copies of the dup profile: no copy can serve a read, so these must give EIO.
awk '{ n[$1]++ } END { for (b in n) if (n[b] == 2) print b }' "$work/bad_copies" | sort -n \
  >"$work/unreadable"
n_unreadable=$(wc -l <"$work/unreadable")
other_errors=$(grep '^ERROR:' "$work/check.log" | grep -v 'errors found in csum tree')

if ((n_bad == 0)); then
  if ((check_rc != 0)); then
    sed 's/^/  check: /' "$work/check.log"
    fail "btrfs check --check-data-csum failed (status $check_rc) without any csum mismatch"
    finish
  fi
  skip "bug not reproduced (kernel may carry the backport): btrfs check found no data csum" \
    "mismatch in $race_mib MiB of racing O_DIRECT writes"
fi
pass "btrfs check --check-data-csum: $n_bad bad blocks of $((race_mib * 256))" \
  "(mirror 1: $n_mirror1, mirror 2: $n_mirror2, both: $n_unreadable)"
if ((check_rc == 0)); then
  fail "btrfs check listed $n_bad mismatches but exited 0"
fi
if [[ -n $other_errors ]]; then
  sed 's/^/  check: /' "$work/check.log"
  fail "btrfs check found errors other than data csum mismatches: $other_errors"
else
  pass "btrfs check found nothing wrong besides data csums"
fi

# --- 3. the host kernel (which has the fix) reading the image read-only ---
if ((EUID != 0)); then
  echo "NOTE: not root: skipping the loop-mount checks (EIO on csum_file, NOCOW control)"
  finish
fi
if ! loop=$(losetup -f --show -r "$img"); then
  loop=""
  fail "losetup -f --show -r $img failed"
  finish
fi
mnt=$work/mnt
mkdir "$mnt"
if ! mount -t btrfs -o ro "$loop" "$mnt"; then
  fail "cannot mount $loop ($img) read-only"
  finish
fi

attrs=$(lsattr -d "$mnt/nocow_file" 2>&1 | awk '{ print $1 }')
if [[ $attrs == *C* ]]; then
  pass "nocow_file is NOCOW ($attrs)"
else
  fail "nocow_file is not NOCOW: lsattr says '$attrs'"
fi
if size=$(cat -- "$mnt/nocow_file" 2>"$work/cat_nocow.err" | wc -c) &&
  [[ ! -s $work/cat_nocow.err ]] && ((size == race_mib << 20)); then
  pass "nocow_file reads back whole ($size bytes, no error)"
else
  fail "nocow_file did not read back: $size bytes, $(cat "$work/cat_nocow.err")"
fi

cat -- "$mnt/csum_file" >/dev/null 2>"$work/cat_csum.err"
cat_rc=$?
if ((n_unreadable > 0)); then
  if ((cat_rc != 0)) && grep -q 'Input/output error' "$work/cat_csum.err"; then
    pass "cat csum_file fails with EIO"
  else
    fail "cat csum_file should fail with EIO ($n_unreadable blocks bad on both copies)," \
      "got status $cat_rc: $(cat "$work/cat_csum.err")"
  fi
else
  # Every bad block has a good copy: reads repair themselves (in memory, the mount is ro).
  if ((cat_rc == 0)); then
    pass "cat csum_file succeeds: every bad block has a good copy"
  else
    fail "cat csum_file failed though every bad block has a good copy: $(cat "$work/cat_csum.err")"
  fi
fi

# One O_DIRECT read per 4 KiB block; with conv=noerror dd reports each failing block and skips it.
dd if="$mnt/csum_file" of=/dev/null bs=4096 iflag=direct conv=noerror 2>"$work/dd.err"
n_eio=$(grep -c 'error reading' "$work/dd.err")
if ((n_eio == n_unreadable)); then
  pass "host kernel: $n_eio unreadable blocks in csum_file, as many as btrfs check found bad" \
    "on both copies"
else
  fail "host kernel: $n_eio unreadable blocks in csum_file, btrfs check: $n_unreadable"
fi

# On btrfs, FIEMAP's "physical" offsets are logical addresses, the bytenr btrfs check prints.
# filefrag -v -b1 lines: "   0:        0.. 8388607:   63963136..  72351743: 8388608: ...".
extents() {
  filefrag -v -b1 -- "$1" |
    awk '/^ *[0-9]+:/ { gsub(/\.\.|:/, " "); split($0, f, " "); print f[4], f[5] }'
}
extents "$mnt/csum_file" >"$work/csum_extents"
extents "$mnt/nocow_file" >"$work/nocow_extents"
if [[ ! -s $work/csum_extents || ! -s $work/nocow_extents ]]; then
  fail "filefrag gave no extents for csum_file or nocow_file"
else
  # Prints each bad block with the file its address belongs to (or "none").
  awk 'FILENAME ~ /csum_extents$/ { cs[++nc] = $1; ce[nc] = $2; next }
       FILENAME ~ /nocow_extents$/ { ns[++nn] = $1; ne[nn] = $2; next }
       { f = "none"
         for (i = 1; i <= nc; i++) if ($1 >= cs[i] && $1 <= ce[i]) f = "csum_file"
         for (i = 1; i <= nn; i++) if ($1 >= ns[i] && $1 <= ne[i]) f = "nocow_file"
         print $1, f }' "$work/csum_extents" "$work/nocow_extents" "$work/bad_blocks" \
    >"$work/owners"
  n_in_csum=$(awk '$2 == "csum_file"' "$work/owners" | wc -l)
  if ((n_in_csum == n_bad)); then
    pass "all $n_bad bad blocks belong to csum_file, none to nocow_file"
  else
    fail "only $n_in_csum of $n_bad bad blocks belong to csum_file:" \
      "$(awk '$2 != "csum_file"' "$work/owners" | head -n 5 | tr '\n' ' ')"
  fi
fi

umount "$mnt" || fail "cannot unmount $mnt"
finish
