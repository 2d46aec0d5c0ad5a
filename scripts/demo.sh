#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 The vmcsum authors
#
# The README's "main job" demo. Run as root:
#   scripts/demo.sh          build a throwaway loop-mounted btrfs with a few VM images, audit it,
#                            remove everything again
#   scripts/demo.sh PATH     audit PATH (an image or a directory of images) instead
# The images: a sparse raw disk with holes, a qcow2, a NOCOW raw (chattr +C before the first
# write), a reflink clone sharing extents with the raw disk, and a read-only snapshot of a
# subvolume holding another image.
# vmcsum is $VMCSUM, else build/vmcsum of this checkout, else the one on PATH. It runs `audit` on
# the images directory when this vmcsum has that command, otherwise `show` on every image; first
# as a table, then as JSON (through jq when installed). The demo exits with vmcsum's exit code.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

usage() {
  echo "usage: $0 [PATH]" >&2
  exit 64
}
say() { printf '\n== %s\n' "$*"; }
die() {
  echo "demo: $*" >&2
  exit 3
}

target=""
case $# in
  0) ;;
  1)
    [[ $1 == -h || $1 == --help ]] && usage
    target=$1
    [[ -e $target ]] || {
      echo "demo: $target does not exist" >&2
      exit 64
    }
    ;;
  *) usage ;;
esac

# --- install and build (idempotent), unless a vmcsum binary was handed in -------------------------
if [[ -z ${VMCSUM:-} ]]; then
  say "installing dependencies and building (scripts/setup.sh)"
  "$here/scripts/setup.sh" >/dev/null
fi

# --- find vmcsum -----------------------------------------------------------------------------------
if [[ -n ${VMCSUM:-} ]]; then
  vmcsum=$VMCSUM
elif [[ -x $here/build/vmcsum ]]; then
  vmcsum=$here/build/vmcsum
elif command -v vmcsum >/dev/null 2>&1; then
  vmcsum=$(command -v vmcsum)
else
  die "vmcsum not found: build it (scripts/setup.sh) or set VMCSUM=/path/to/vmcsum"
fi

# --- cleanup: only what this script created ---------------------------------------------------------
tmp="" mnt="" loopdev="" img=""
# shellcheck disable=SC2317 # runs from the traps
cleanup() {
  local rc=$? try
  set +e
  trap - EXIT INT TERM HUP
  cd /
  if [[ -n $mnt ]] && mountpoint -q "$mnt"; then
    for try in 1 2 3 4 5; do
      umount "$mnt" 2>/dev/null && break
      sleep "0.$try"
    done
    mountpoint -q "$mnt" && umount -l "$mnt"
  fi
  # Detach our device only if it still is ours (attached to our image file).
  if [[ -n $loopdev && -n $img ]]; then
    local back
    back=$(losetup -n -O BACK-FILE "$loopdev" 2>/dev/null)
    if [[ ${back% (deleted)} == "$img" ]]; then
      btrfs device scan --forget "$loopdev" >/dev/null 2>&1
      losetup -d "$loopdev" || echo "demo: could not detach $loopdev" >&2
    fi
  fi
  if [[ -n $tmp && -d $tmp ]] && ! findmnt -rn -o TARGET | grep -qF -- "$tmp/"; then
    rm -rf --one-file-system -- "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- the demo filesystem ----------------------------------------------------------------------------
make_demo_fs() {
  [[ $(id -u) -eq 0 ]] || die "must run as root to build the demo filesystem (or pass a PATH)"
  local c
  for c in losetup mkfs.btrfs btrfs mount chattr truncate qemu-img; do
    command -v "$c" >/dev/null 2>&1 || die "needs $c"
  done
  grep -qw btrfs /proc/filesystems || modprobe btrfs 2>/dev/null || true
  grep -qw btrfs /proc/filesystems || die "the kernel has no btrfs"

  tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmcsum-demo.XXXXXX")
  img=$tmp/btrfs.img
  mnt=$tmp/mnt
  mkdir "$mnt"
  truncate -s 512M "$img"
  loopdev=$(losetup -f --show "$img")
  mkfs.btrfs -q -f -L vmcsum-demo "$loopdev" >/dev/null 2>&1 || die "mkfs.btrfs $loopdev failed"
  mount -t btrfs "$loopdev" "$mnt"
  say "demo filesystem: $loopdev (512 MiB sparse file $img) on $mnt"

  local d=$mnt/images
  mkdir "$d"
  # A sparse raw disk: 1 GiB apparent size, a few MiB of data, holes in between.
  truncate -s 1G "$d/disk.raw"
  dd if=/dev/urandom of="$d/disk.raw" bs=1M count=4 conv=notrunc status=none
  dd if=/dev/urandom of="$d/disk.raw" bs=1M count=2 seek=300 conv=notrunc status=none
  dd if=/dev/urandom of="$d/disk.raw" bs=64K count=8 seek=12000 conv=notrunc status=none
  # qcow2, with some guest data when qemu-io is available.
  qemu-img create -q -f qcow2 "$d/disk.qcow2" 2G
  if command -v qemu-io >/dev/null 2>&1; then
    qemu-io -f qcow2 -c 'write -P 0x5a 0 3M' -c 'write -P 0xa5 1G 1M' "$d/disk.qcow2" >/dev/null
  fi
  # NOCOW: the flag only sticks while the file is empty (btrfs_ioctl_setflags), so set it first.
  touch "$d/nocow.raw"
  chattr +C "$d/nocow.raw"
  dd if=/dev/urandom of="$d/nocow.raw" bs=1M count=8 status=none
  # Shares every extent with disk.raw.
  cp --reflink=always "$d/disk.raw" "$d/clone.raw"
  # A read-only snapshot of a subvolume that holds another image.
  btrfs -q subvolume create "$mnt/vm-subvol"
  dd if=/dev/urandom of="$mnt/vm-subvol/guest.raw" bs=1M count=3 status=none
  btrfs -q subvolume snapshot -r "$mnt/vm-subvol" "$d/guest-snapshot"
  sync

  ls -lsh "$d" "$d/guest-snapshot"
  echo
  lsattr "$d"/*.raw "$d"/disk.qcow2 "$d/guest-snapshot/guest.raw"
  target=$d
}

if [[ -z $target ]]; then
  make_demo_fs
fi

# --- run vmcsum ------------------------------------------------------------------------------------
# Does this vmcsum have `audit`? Not just `vmcsum audit --help` exiting 0: CLI11 answers --help
# before it rejects an unknown subcommand, so look for "Usage: vmcsum audit" in that help.
has_audit() {
  local help
  help=$("$vmcsum" audit --help 2>/dev/null) || return 1
  [[ $help =~ (^|$'\n')Usage:[^$'\n']*[[:space:]]audit([[:space:]]|$'\n'|$) ]]
}

args=()
if has_audit; then
  args=(audit "$target")
elif [[ -d $target && -n $mnt ]]; then
  mapfile -t files < <(find "$target" -type f | sort)
  args=(show "${files[@]}")
else
  args=(show "$target")
fi

say "$vmcsum ${args[*]}"
rc=0
"$vmcsum" "${args[@]}" || rc=$?

say "$vmcsum --json ${args[*]}"
json_rc=0
if command -v jq >/dev/null 2>&1; then
  "$vmcsum" --json "${args[@]}" | jq . || json_rc=${PIPESTATUS[0]}
else
  "$vmcsum" --json "${args[@]}" || json_rc=$?
fi
if ((json_rc != rc)); then
  echo "demo: note: the JSON run exited $json_rc, the table run $rc" >&2
fi

echo
case $rc in
  0) echo "vmcsum exit status 0: clean, nothing to report." ;;
  1) echo "vmcsum exit status 1: warnings, some images have settings worth a look." ;;
  2) echo "vmcsum exit status 2: critical findings, some images are at risk (see above)." ;;
  3) echo "vmcsum exit status 3: could not complete for some path (permissions? not btrfs?)." ;;
  64) echo "vmcsum exit status 64: usage error (this vmcsum does not accept the demo's command line)." ;;
  *) echo "vmcsum exit status $rc: unexpected (a crash or a signal?)." ;;
esac
exit "$rc"
