#!/usr/bin/env bash
# vmcsum audit on real btrfs: real qcow2/vmdk/vdi made by qemu-img, a real process holding an
# image open with O_DIRECT and QEMU's OFD locks, a real snapshot sharing extents, a real
# checksum failure in the kernel log, libvirt and Proxmox configuration fixtures.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_loop
need_cmd jq qemu-img chattr btrfs setpriv
keep_json_documents # every --json document is validated at the end (tests/schema)
: "${VMCSUM:?}" "${VMCSUM_TOOLS:?}"

finding_sev() { # JSON IMAGE_BASENAME CODE
  jq -r --arg n "$2" --arg c "$3" \
    '.images[] | select(.path | endswith("/" + $n)) | .findings[] | select(.code == $c) | .severity' <<<"$1"
}

# --- a single-profile filesystem with images of every format -------------------------------------
make_btrfs --size 512 -d single -m dup
S=$MNT
mkdir "$S/images"
qemu-img create -q -f qcow2 "$S/images/guest.qcow2" 64M
qemu-img create -q -f vmdk "$S/images/guest.vmdk" 64M
qemu-img create -q -f vdi "$S/images/guest.vdi" 64M
qemu-img create -q -f vpc "$S/images/guest.vhd" 64M
qemu-img create -q -f vhdx "$S/images/guest.vhdx" 64M
qemu-img create -q -f qed "$S/images/guest.qed" 64M
dd if=/dev/urandom of="$S/images/disk.raw" bs=1M count=4 status=none
# Raw without a telling extension, recognised by its MBR boot signature.
dd if=/dev/zero of="$S/images/mbrdisk" bs=1M count=1 status=none
printf '\x55\xaa' | dd of="$S/images/mbrdisk" bs=1 seek=510 conv=notrunc status=none
# Not images: small files, a text file, a FIFO, a symlink leading out of the tree.
echo hello >"$S/images/notes.txt"
head -c 2000000 /dev/zero >"$S/images/zeros.bin"   # big enough to be sniffed, not an image
mkfifo "$S/images/fifo"
ln -s /etc "$S/images/escape"
touch "$S/images/fast.raw" && chattr +C "$S/images/fast.raw"
dd if=/dev/urandom of="$S/images/fast.raw" bs=1M count=2 conv=notrunc status=none
sync

sync -f "$S"
gen_before=$(btrfs inspect-internal dump-super "${DEVS[0]}" | awk '$1 == "generation" {print $2}')
J=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images" || true)
check "audit JSON is valid and versioned" jq -e '.schema == "vmcsum.audit/1"' <<<"$J"
# --- the kernel record gains an entry whenever audit runs (issue 19) -----------------------------
# Oracle: the superblock generation btrfs itself reports (dump-super). audit commits (BTRFS_IOC_SYNC)
# and records the generation after that commit; it writes nothing after it (reads are O_NOATIME),
# so the superblock on disk still carries that generation.
gen_after=$(btrfs inspect-internal dump-super "${DEVS[0]}" | awk '$1 == "generation" {print $2}')
fsid=$(btrfs filesystem show "$S" | awk '/uuid:/ {print $NF; exit}')
rec=$VMCSUM_STATE_DIR/generations/$fsid
check "audit: the filesystem's kernel record exists" test -f "$rec"
boot=$(tr -d -- '-\n' </proc/sys/kernel/random/boot_id)
last=$(tail -n1 "$rec" 2>/dev/null || true)
check_eq "audit: the record's last entry is this run on this boot and kernel" "$boot run $(uname -r)" \
  "$(awk '{print $2, $4, $5}' <<<"$last")"
check_eq "audit: recorded generation = the superblock's (dump-super)" "$gen_after" "${last%% *}"
check "audit: recorded generation is not older than before the run" test "${last%% *}" -ge "$gen_before"
# A state directory others can write is refused: nothing recorded, a note, the audit unchanged.
mkdir -m 0777 "$IT_TMP/open-state"
set +e
J2=$(VMCSUM_STATE_DIR=$IT_TMP/open-state "$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images")
rc2=$?
set -e
check_eq "audit with a shared state dir: same exit code" "$(jq .exit_code <<<"$J")" "$rc2"
check "audit with a shared state dir: says the record was not updated" \
  jq -e '[.notes[] | select(test("kernel record of .* not updated"))] | length == 1' <<<"$J2"
check "audit with a shared state dir: nothing written there" test ! -e "$IT_TMP/open-state/generations"
for pair in guest.qcow2:qcow2 guest.vmdk:vmdk guest.vdi:vdi guest.vhd:vhd guest.vhdx:vhdx \
            guest.qed:qed disk.raw:raw mbrdisk:raw fast.raw:raw; do
  n=${pair%%:*} fmt=${pair#*:}
  check_eq "format of $n (made by qemu-img/dd)" "$fmt" \
    "$(jq -r --arg n "$n" '.images[] | select(.path | endswith("/" + $n)) | .format' <<<"$J")"
done
check_eq "only the 9 images found (no text, zeros, FIFO, symlink escape)" 9 "$(jq '.images | length' <<<"$J")"
check "nothing found through the symlink to /etc" \
  jq -e '[.images[].path | select(test("/etc/|escape"))] | length == 0' <<<"$J"
check_eq "kernel source is the version table" version-table "$(jq -r .kernel.source <<<"$J")"
check_eq "kernel release is uname -r" "$(uname -r)" "$(jq -r .kernel.release <<<"$J")"
check_eq "fast.raw: NOCOW image in a COW directory" warning "$(finding_sev "$J" fast.raw dir-nocow-mismatch)"
check_eq "fast.raw (walked): dir_nocow false, as lsattr -d shows no C" "false:" \
  "$(jq -r '.images[] | select(.path | endswith("/fast.raw")) | .dir_nocow' <<<"$J"):$(lsattr -d "$S/images" | cut -d' ' -f1 | tr -cd C)"
check_eq "fast.raw: NODATASUM -> no-checksums info" info "$(finding_sev "$J" fast.raw no-checksums)"

# A real process holding the NOCOW image with O_DIRECT and QEMU's OFD locks.
"$VMCSUM_TOOLS/hold_open" --direct --write --qemu-locks --ready "$IT_TMP/ready1" "$S/images/fast.raw" &
bg_track $!
holder=$!
# Up to 30 s: a loaded machine (or the sanitizer build) can take seconds to start it.
for _ in $(seq 300); do [[ -e $IT_TMP/ready1 ]] && break; sleep 0.1; done
J=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images/fast.raw" || true)
check_eq "open_by names the holder with O_DIRECT" "$holder true true" \
  "$(jq -r '.images[0].open_by[0] | "\(.pid) \(.o_direct) \(.writable)"' <<<"$J")"
check "QEMU write lock seen (OFD lock on byte 101)" \
  jq -e '[.images[0].locks[] | select(.kind == "OFDLCK" and .qemu_write)] | length > 0' <<<"$J"
check_eq "O_DIRECT on a NODATASUM single image: the fast path" info "$(finding_sev "$J" fast.raw nocow-direct-fast-path)"
# The locks come from fdinfo alone: reading /proc/locks takes the kernel's file lock semaphore
# for writing (fs/locks.c locks_start()), a wait of milliseconds for vmcsum and for every file
# lock on the host. Oracle: strace, every open of the process and its threads.
# LeakSanitizer refuses to run under ptrace (the sanitizer pass): the traced runs check no leaks.
NO_LEAK_CHECK=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
if command -v strace >/dev/null && strace -f -e trace=open,openat,openat2 -o /dev/null true 2>/dev/null; then
  "${NO_LEAK_CHECK[@]}" strace -f -e trace=open,openat,openat2 \
    -o "$IT_TMP/opens" "$VMCSUM_REAL" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" \
    --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images/fast.raw" >"$IT_TMP/traced.json" 2>/dev/null || true
  check "traced: QEMU write lock still seen" \
    jq -e '[.images[0].locks[] | select(.kind == "OFDLCK" and .qemu_write)] | length > 0' "$IT_TMP/traced.json"
  check "traced: /proc's fdinfo read" grep -q '"fdinfo"' "$IT_TMP/opens"
  check_eq "traced: /proc/locks never opened" 0 "$(grep -c -E '"(/proc/)?locks"' "$IT_TMP/opens" || true)"
else
  note "SKIP /proc/locks check: strace is missing or cannot trace here"
fi
# The same image as a 6.1 kernel would see it: still no checksums, so no false mismatch risk.
J61=$("$VMCSUM" --json audit --kernel-log '' --kernel-release 6.1.0-28-amd64 --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images/fast.raw" || true)
check "6.1: NODATASUM image has no false-mismatch risk" bash -c "! jq -e '.images[0].findings[] | select(.code == \"false-mismatch-risk\")' <<<'$J61' >/dev/null"
kill "$holder"

# The checksummed raw image open with O_DIRECT now.
"$VMCSUM_TOOLS/hold_open" --direct --write --ready "$IT_TMP/ready2" "$S/images/disk.raw" &
bg_track $!
holder=$!
# Up to 30 s: a loaded machine (or the sanitizer build) can take seconds to start it.
for _ in $(seq 300); do [[ -e $IT_TMP/ready2 ]] && break; sleep 0.1; done
set +e
J=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images/disk.raw"); rc=$?
set -e
check_eq "6.18: checksummed + O_DIRECT open -> buffered fallback warning" warning "$(finding_sev "$J" disk.raw dio-buffered-fallback)"
check "6.18 single: NOCOW would give zero-copy back" jq -e '.images[0].findings[0].message | test("zero-copy back")' <<<"$J"
check_eq "warning -> exit 1" 1 "$rc"
set +e
J=$("$VMCSUM" --json audit --kernel-log '' --kernel-release 6.12.76 --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images/disk.raw"); rc=$?
set -e
check_eq "6.12.76: checksummed + O_DIRECT -> false-mismatch-risk critical" critical "$(finding_sev "$J" disk.raw false-mismatch-risk)"
check_eq "critical -> exit 2" 2 "$rc"
kill "$holder"

# --- libvirt and Proxmox configurations -------------------------------------------------------------
mkdir -p "$IT_TMP/libvirt/qemu" "$IT_TMP/libvirt/storage" "$IT_TMP/run/qemu" "$IT_TMP/pve/qemu-server"
cat >"$IT_TMP/libvirt/qemu/win.xml" <<XML
<domain type='kvm'>
  <name>win</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' io='native'/>
      <source file='$S/images/guest.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='$S/images/notes.txt'/>
      <target dev='sda' bus='sata'/>
    </disk>
  </devices>
</domain>
XML
cat >"$IT_TMP/libvirt/storage/default.xml" <<XML
<pool type='dir'><name>default</name><target><path>$S/images</path></target></pool>
XML
# A running domain's status file (domstatus wrapper) with a pool volume disk.
cat >"$IT_TMP/run/qemu/lin.xml" <<XML
<domstatus state='running' pid='4242'>
  <domain type='kvm'>
    <name>lin</name>
    <devices>
      <disk type='volume' device='disk'>
        <driver name='qemu' type='vmdk' cache='directsync'/>
        <source pool='default' volume='guest.vmdk'/>
        <target dev='vdb' bus='virtio'/>
      </disk>
    </devices>
  </domain>
</domstatus>
XML
mkdir -p "$S/pve/images/101"
qemu-img create -q -f raw "$S/pve/images/101/vm-101-disk-0.raw" 1M
cat >"$IT_TMP/pve/storage.cfg" <<CFG
dir: local-test
	path $S/pve
	content images
CFG
cat >"$IT_TMP/pve/qemu-server/101.conf" <<CFG
name: pvevm
scsi0: local-test:101/vm-101-disk-0.raw,cache=directsync,aio=native,size=1M
ide2: none,media=cdrom
CFG
set +e
J=$("$VMCSUM" --json audit --kernel-log '' --kernel-release 6.6.129 --libvirt-dir "$IT_TMP/libvirt" \
  --libvirt-run-dir "$IT_TMP/run" --pve-dir "$IT_TMP/pve" "$S/images/guest.qcow2" "$S/images/guest.vmdk" "$S/pve"); rc=$?
set -e
check_eq "libvirt disk: configured cache/io" "none native true" \
  "$(jq -r '.images[] | select(.path | endswith("guest.qcow2")) | .configured[0] | "\(.cache) \(.io) \(.o_direct)"' <<<"$J")"
check_eq "running domain's pool volume resolved through the pool target" "directsync true" \
  "$(jq -r '.images[] | select(.path | endswith("guest.vmdk")) | .configured[0] | "\(.cache) \(.o_direct)"' <<<"$J")"
check_eq "libvirt disk on 6.6.129: false-mismatch-risk" critical "$(finding_sev "$J" guest.qcow2 false-mismatch-risk)"
check_eq "Proxmox disk: configured cache=directsync" "proxmox:101 directsync true" \
  "$(jq -r '.images[] | select(.path | endswith("vm-101-disk-0.raw")) | .configured[0] | "\(.source) \(.cache) \(.o_direct)"' <<<"$J")"
J66=$("$VMCSUM" --json audit --kernel-log '' --kernel-release 6.6.130 --libvirt-dir "$IT_TMP/libvirt" \
  --libvirt-run-dir "$IT_TMP/run" --pve-dir "$IT_TMP/pve" "$S/images/guest.qcow2" || true)
check_eq "6.6.130 has the backport: warning only" warning "$(finding_sev "$J66" guest.qcow2 dio-buffered-fallback)"
# A configured disk that is missing below the path audited is a problem, as it is without paths
# (the old audit passed over it in silence when given a path, and named it without).
mkdir -p "$IT_TMP/libvirt-missing/qemu"
libvirt_domain "$IT_TMP/libvirt-missing/qemu/gone.xml" gone "$S/images/missing.raw" none
check "fixture: the configured disk does not exist" test ! -e "$S/images/missing.raw"
set +e
Jg=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/libvirt-missing" \
  --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images"); rc=$?
set -e
check_eq "a missing configured disk below the path: a problem naming it, exit 3" "1 3" \
  "$(jq --arg p "$S/images/missing.raw" '[.problems[] | select(.path == $p)] | length' <<<"$Jg") $rc"

# --- dup profile: NOCOW loses self-healing; snapshots share extents ---------------------------------
make_btrfs --size 512 -d dup -m dup
D=$MNT
btrfs subvolume create "$D/vms" >/dev/null
mkdir "$D/vms/nocow" && chattr +C "$D/vms/nocow"
dd if=/dev/urandom of="$D/vms/nocow/dup.raw" bs=1M count=2 status=none
# mv keeps the old flags: a checksummed image moved into the NOCOW directory stays COW.
dd if=/dev/urandom of="$D/vms/moved.raw" bs=1M count=1 status=none
mv "$D/vms/moved.raw" "$D/vms/nocow/moved.raw"   # same subvolume: a rename
btrfs subvolume snapshot -r "$D/vms" "$D/vms-snap" >/dev/null
sync
J=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$D/vms/nocow/dup.raw" || true)
check_eq "NOCOW on dup: nocow-redundant-profile" warning "$(finding_sev "$J" dup.raw nocow-redundant-profile)"
check "6.18 on dup: NOCOW buys no zero-copy (7.0 rule)" jq -e '.images[0].findings[] | select(.code == "nocow-redundant-profile") | .message | test("no zero-copy")' <<<"$J"
check_eq "NOCOW image in a snapshot: nocow-shared-extents" warning "$(finding_sev "$J" dup.raw nocow-shared-extents)"
check_eq "shared bytes = fi du" "$(btrfs filesystem du --raw "$D/vms/nocow/dup.raw" | tail -1 | awk '{print $1 - $2}')" "$(jq -r '.images[0].shared_bytes' <<<"$J")"
Jm=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$D/vms/nocow/moved.raw" || true)
check_eq "COW image moved into a NOCOW directory: dir-nocow-mismatch" warning "$(finding_sev "$Jm" moved.raw dir-nocow-mismatch)"
check "its message says the directory is NOCOW" jq -e '.images[0].findings[] | select(.code == "dir-nocow-mismatch") | .message | test("directory is NOCOW")' <<<"$Jm"
check_eq "lsattr agrees: the moved image has no C" "" "$(lsattr "$D/vms/nocow/moved.raw" | cut -d' ' -f1 | tr -d -- '-')"
check_eq "NOCOW image in a NOCOW directory: no mismatch finding" "" "$(finding_sev "$J" dup.raw dir-nocow-mismatch)"
# The same images found by a walk: their directory's NOCOW is then read from the descriptor the
# walk listed them with (a look thread's), not from a path opened again. Oracle: lsattr -d.
Jw=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$D/vms" || true)
check_eq "lsattr -d: the nocow directory has C" C "$(lsattr -d "$D/vms/nocow" | cut -d' ' -f1 | tr -cd C)"
check_eq "lsattr -d: the subvolume's top has no C" "" "$(lsattr -d "$D/vms" | cut -d' ' -f1 | tr -cd C)"
for n in dup.raw moved.raw; do
  check_eq "walk: $n's dir_nocow is its directory's C (lsattr -d)" true \
    "$(jq -r --arg n "$n" '.images[] | select(.path | endswith("/nocow/" + $n)) | .dir_nocow' <<<"$Jw")"
done
check_eq "walk: COW image in the NOCOW directory: dir-nocow-mismatch" warning "$(finding_sev "$Jw" moved.raw dir-nocow-mismatch)"
check_eq "walk: NOCOW image in the NOCOW directory: no mismatch" "" "$(finding_sev "$Jw" dup.raw dir-nocow-mismatch)"
# Many directories, C on every third, three images each: the look threads remember the last
# directories' answers (DirNocowMemo), so more directories than it remembers, walked at once.
for i in $(seq 1 14); do
  mkdir -p "$D/many/m$i"
  ((i % 3 == 0)) && chattr +C "$D/many/m$i"
  for k in 1 2 3; do qemu-img create -q -f qcow2 "$D/many/m$i/vm$k.qcow2" 16M; done
done
Jmany=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$D/many" || true)
check_eq "many directories: every image found" 42 "$(jq '.images | length' <<<"$Jmany")"
want=$(for i in $(seq 1 14); do for k in 1 2 3; do
  echo "m$i/vm$k.qcow2 $(lsattr -d "$D/many/m$i" | cut -d' ' -f1 | grep -q C && echo true || echo false)"
done; done | sort)
check_eq "many directories: each image's dir_nocow is its directory's C (lsattr -d)" "$want" \
  "$(jq -r '.images[] | "\(.path | split("/") | .[-2:] | join("/")) \(.dir_nocow)"' <<<"$Jmany" | sort)"

# --- a real checksum failure in the kernel log -------------------------------------------------------
# dmesg from a mark on: it keeps earlier filesystems' lines on this loop device (lib.sh).
kmsg_mark
dd if=/dev/urandom of="$D/vms/bad.raw" bs=64K count=4 status=none
sync
damage_sectors "$D/vms/bad.raw" 65536 1 all
D=$MNT
dd if="$D/vms/bad.raw" of=/dev/null bs=64K iflag=direct status=none 2>/dev/null || true
# The kernel ratelimits these lines (btrfs_warn_rl: one state per level for every btrfs on the
# machine, 5 s interval, burst 10), so on a busy log our read may go unlogged. Wait out the
# interval and read again a few times; the real-/dev/kmsg checks run only when dmesg (the oracle)
# has the line, and the same checks run on a --kernel-log file either way.
bad_ino=$(stat -c %i "$D/vms/bad.raw")
bad_root=$(btrfs inspect-internal rootid "$D/vms/bad.raw")
bad_dev=${DEVS[0]##*/}
bad_line="BTRFS warning (device $bad_dev): csum failed root $bad_root ino $bad_ino off 65536 "
dmesg_since >"$IT_TMP/dmesg"
for ((try = 0; try < 5; try++)); do
  grep -qF -- "$bad_line" "$IT_TMP/dmesg" && break
  sleep 6
  dd if="$D/vms/bad.raw" of=/dev/null bs=4096 count=1 skip=16 iflag=direct status=none 2>/dev/null || true # EIO expected
  dmesg_since >"$IT_TMP/dmesg"
done
if grep -qF -- "$bad_line" "$IT_TMP/dmesg"; then
  set +e
  J=$("$VMCSUM" --json audit --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$D/vms/bad.raw"); rc=$?
  set -e
  check_eq "kernel log (real /dev/kmsg) shows the failure: csum-errors-logged" critical "$(finding_sev "$J" bad.raw csum-errors-logged)"
  check "logged offset is the damaged sector" jq -e '.images[0].logged_offsets | index(65536) != null' <<<"$J"
  check_eq "critical -> exit 2" 2 "$rc"
  # The kernel's own line, as dmesg prints it.
  grep -F -- "$bad_line" "$IT_TMP/dmesg" | tail -n 1 >"$IT_TMP/kernel.log"
else
  note "the kernel logged no line for the EIO after $try re-reads (ratelimited); real /dev/kmsg not checked"
  # The line as fs/btrfs/inode.c btrfs_print_data_csum_error() prints it on 6.18 (kmsg-free).
  printf '[ 1234.567890] %scsum 0x%08x expected csum 0x%08x mirror 1\n' "$bad_line" 1 2 >"$IT_TMP/kernel.log"
fi
set +e
J=$("$VMCSUM" --json audit --kernel-log "$IT_TMP/kernel.log" --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$D/vms/bad.raw"); rc=$?
set -e
check_eq "kernel log file: csum-errors-logged" critical "$(finding_sev "$J" bad.raw csum-errors-logged)"
check "kernel log file: logged offset is the damaged sector" jq -e '.images[0].logged_offsets | index(65536) != null' <<<"$J"
check_eq "kernel log file: critical -> exit 2" 2 "$rc"

# --- bad input ----------------------------------------------------------------------------------------
set +e
J=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$IT_TMP/nonexistent" "$S/images/fifo"); rc=$?
set -e
check_eq "missing path and FIFO: exit 3" 3 "$rc"
check_eq "both reported as problems" 2 "$(jq '.problems | length' <<<"$J")"
timeout 20 "$VMCSUM" --color=never audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/images" >"$IT_TMP/text.out" 2>/dev/null || true
check "text output has a header" grep -q '^SEVERITY' "$IT_TMP/text.out"
check "text output has a summary" grep -q 'image(s): 0 critical, 1 warning' "$IT_TMP/text.out"
check "no colour codes with --color=never" bash -c "! grep -q $'\\x1b' '$IT_TMP/text.out'"

# --- files that vanish during the walk (temp files, an image deleted meanwhile) ---------------------
# Gone between the listing and the look, or between the look and the examination: nothing left to
# audit, never a problem (exit 3 would make a timer's audit "could not complete" at random). A
# writer creates and removes 20 images at a time while 12 audits run; with the problem reported
# (before this was fixed) about one audit in four exited 3 here.
mkdir "$S/churn"
# It stops when asked (churn.stop), not by a kill: killed, the subshell left its running head
# to write one more file after the rm below (rm: Directory not empty, now and then).
(for _i in $(seq 1 2000); do
  [[ -e $IT_TMP/churn.stop ]] && break
  for _j in $(seq 1 20); do head -c 8192 /dev/urandom >"$S/churn/t$_j.raw"; done
  rm -f "$S/churn"/t*.raw
done) &
CHURN=$!
churn_bad=""
for _k in $(seq 1 12); do
  set +e
  J=$("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/churn" 2>/dev/null)
  rc=$?
  set -e
  if [[ $rc != 0 || $(jq '.problems | length' <<<"$J") != 0 ]]; then
    churn_bad+="run $_k: exit $rc $(jq -c '.problems' <<<"$J"); "
  fi
done
touch "$IT_TMP/churn.stop"
wait "$CHURN" 2>/dev/null || true
rm -rf "$S/churn"
check_eq "files vanishing during the walk: never a problem, exit 0 (12 audits)" "" "$churn_bad"

# --- not root: a file vmcsum cannot open is never "ok" or "raw" (issue 12) -------------------------
mkdir "$S/private"
dd if=/dev/zero of="$S/private/secret.raw" bs=1M count=1 status=none
chmod 0600 "$S/private/secret.raw"
chmod a+x "$IT_TMP" "$(dirname "$S")" "$S"
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all)
check_fails "oracle: uid 65534 cannot read the file (head)" "${NOBODY[@]}" head -c1 "$S/private/secret.raw"
set +e
J=$("${NOBODY[@]}" "$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$S/private/secret.raw" 2>"$IT_TMP/nobody.err")
rc=$?
set -e
check_eq "not root: exit 1 at least (facts that could not be learnt), a note says so" "1 1" \
  "$((rc >= 1)) $(jq '[.notes[] | select(startswith("not run as root"))] | length' <<<"$J")"
check "not root: a warning on stderr says to run as root" grep -q 'warning: not run as root' "$IT_TMP/nobody.err"
# Every other user's process is unreadable as nobody (root's init at least): one note per reason.
check_eq "not root: unreadable processes in one note per reason, not one per process" \
  "$(jq '[.notes[] | select(test("process\\(es\\) not readable")) | capture("\\((?<r>[^;]*);").r] | unique | length' <<<"$J") 1" \
  "$(jq '[.notes[] | select(test("process\\(es\\) not readable"))] | length' <<<"$J") $(jq '[.notes[] | select(test("process\\(es\\) not readable"))] | length > 0' <<<"$J" | sed 's/true/1/;s/false/0/')"
check_eq "unreadable file: format unknown, not guessed from its name" unknown "$(jq -r '.images[0].format' <<<"$J")"
check_eq "unreadable file: not-readable warning, so never ok" warning "$(finding_sev "$J" secret.raw not-readable)"

# --- the default search: a user's image directories are theirs ----------------------------------------
# With no path, audit walks every user's ~/.local/share/{libvirt,gnome-boxes}/images. The daily
# audit runs as root: a symlink a user puts there, to a directory they cannot read, must not
# make root look into it; a directory of their own elsewhere (images moved to a bigger disk) is
# still audited. The users come from /etc/passwd: a copy with one test user is bind-mounted over
# it in a mount namespace of its own (unshare -m), so the host's file is never touched.
if command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
  U=$IT_TMP/home-u
  mkdir -p "$U/.local/share" "$S/rootonly" "$S/theirs"
  qemu-img create -q -f qcow2 "$S/rootonly/vault.qcow2" 1M
  qemu-img create -q -f qcow2 "$S/theirs/moved.qcow2" 1M
  chmod 0700 "$S/rootonly"
  mkdir -p "$U/.local/share/libvirt" "$U/.local/share/gnome-boxes"
  ln -s "$S/theirs" "$U/.local/share/libvirt/images"
  ln -s "$S/rootonly" "$U/.local/share/gnome-boxes/images"
  chown -h -R 4242:4242 "$U" "$S/theirs"
  { cat /etc/passwd; echo "vmcsumtest:x:4242:4242::$U:/bin/sh"; } >"$IT_TMP/passwd"
  set +e
  J=$(unshare -m sh -c 'mount --bind "$1" /etc/passwd && shift && exec "$@"' _ "$IT_TMP/passwd" \
    "$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" \
    --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" 2>"$IT_TMP/homes.err")
  rc=$?
  set -e
  check "default search: a document" jq -e .schema <<<"$J"
  check_eq "default search: the user's own directory behind the symlink is audited" 1 \
    "$(jq --arg p "$S/theirs/moved.qcow2" '[.images[] | select(.path == $p)] | length' <<<"$J")"
  check_eq "default search: root's directory behind the user's symlink is not" 0 \
    "$(jq --arg p "$S/rootonly/vault.qcow2" '[.images[] | select(.path == $p)] | length' <<<"$J")"
  check_eq "default search: root's directory is not among the places searched" 0 \
    "$(jq --arg p "$S/rootonly" '[.searched[] | select(. == $p)] | length' <<<"$J")"
  check "default search: a note says why it was not audited" \
    jq -e --arg p "$S/rootonly" '.notes | any(contains($p) and contains("does not own"))' <<<"$J"
  note "default search: exit $rc"
else
  note "SKIP default search: no unshare -m here (a mount namespace for a private /etc/passwd)"
fi

# --- a cold tree: directories read ahead, more looks at once (issue 16) ------------------------------
# A cold walk reads its directories ahead on 8 threads (walk_prefetch_threads in audit.cpp) and
# the looks' pool grows from 4 threads when looks read the disk; what a cold audit finds must be
# exactly what a warm one finds. Cold: a fresh mount (btrfs keeps no tree block of the earlier
# mount), so the walk reads the disk, which the kernel's per-thread I/O accounting counts
# whatever the machine's load. Oracles: strace, one file per thread (the read-ahead's own
# getdents64 of 1024 bytes, the threads started, which threads read an image's head), the
# images qemu-img made, and the warm run.
make_btrfs --size 256 -d single -m single
T=$MNT/tree
mkdir -p "$IT_TMP/outside"
qemu-img create -q -f qcow2 "$IT_TMP/outside/elsewhere.qcow2" 1M
for d in $(seq 0 23); do
  dir=$T/g$((d % 4))/s$d
  mkdir -p "$dir"
  (cd "$dir" && touch f{1..150}.txt)
  ((d % 3)) || qemu-img create -q -f qcow2 "$dir/vm$d.qcow2" 1M
done
ln -s "$IT_TMP/outside" "$T/g1/link"
sync
AUDIT_T=("$VMCSUM" --json audit --kernel-log '' --libvirt-dir "$IT_TMP/none" --libvirt-run-dir "$IT_TMP/none" --pve-dir "$IT_TMP/none" "$T")
images_of() { jq -c '[.images[].path] | sort' <<<"$1"; }
"${AUDIT_T[@]}" >/dev/null 2>&1 || true # the kernel record's entry: the runs below write none
WARM=$("${AUDIT_T[@]}" 2>/dev/null) && warm_rc=0 || warm_rc=$?
check_eq "warm tree: the 8 images qemu-img made, none through the symlink" 8 \
  "$(jq '[.images[] | select(.path | test("/s[0-9]+/vm[0-9]+\\.qcow2$"))] | length' <<<"$WARM")"
if [[ ! -r /proc/self/io ]]; then
  note "SKIP cold tree read-ahead checks: the kernel keeps no per-thread I/O accounting (CONFIG_TASK_IO_ACCOUNTING), so audit never reads ahead here"
elif command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null; then
  # The binary itself (the harness's wrapper would add its tee's process). LeakSanitizer
  # refuses to run under ptrace and aborts the process at exit (the sanitizer pass of
  # scripts/test.sh): leaks are checked by every other run, not these traced ones.
  traced() { # PREFIX: the audit of the tree under strace, one file per thread
    "${NO_LEAK_CHECK[@]}" strace -ff -y -e trace=getdents64,pread64 -o "$1" "$VMCSUM_REAL" "${AUDIT_T[@]:1}" 2>/dev/null
  }
  # Warm tree, cold program: the binary's pages dropped from the page cache (GNU dd's nocache,
  # count=0: the whole file), so that code run for the first time is paged in from the disk.
  # Those reads are the thread's too; they must not be taken for a cold tree (CI saw a
  # sanitizer build read a warm tree ahead in full).
  dd if="$VMCSUM_REAL" iflag=nocache count=0 status=none
  traced "$IT_TMP/warm" >/dev/null || true
  remount_btrfs
  COLD=$(traced "$IT_TMP/cold" || true)
  # Cold tree and cold program, as after drop_caches: the walk's first steps page its code in
  # too, and must not hide the tree's reads from the later ones (a watch that kept the thread's
  # counts from before it was made never read ahead here).
  remount_btrfs
  dd if="$VMCSUM_REAL" iflag=nocache count=0 status=none
  BOTH=$(traced "$IT_TMP/both" || true)
  check_eq "cold tree, program paged out: the same images as warm" "$(images_of "$WARM")" "$(images_of "$BOTH")"
  check_eq "cold tree: the same images as warm" "$(images_of "$WARM")" "$(images_of "$COLD")"
  check_eq "cold tree: the same problems as warm" "$(jq -c '.problems' <<<"$WARM")" "$(jq -c '.problems' <<<"$COLD")"
  ahead() { cat "$1".* | grep -cE '^getdents64\(.*, 1024\) += [0-9]+' || true; }
  tasks() { find "$IT_TMP" -maxdepth 1 -name "${1##*/}.*" | wc -l; }
  lookers() { grep -lE '^pread64\([0-9]+<[^>]*\.qcow2>' "$1".* | wc -l; }
  wa=$(ahead "$IT_TMP/warm") ca=$(ahead "$IT_TMP/cold")
  wt=$(tasks "$IT_TMP/warm") ct=$(tasks "$IT_TMP/cold")
  note "read-ahead listings: warm $wa, cold $ca; tasks: warm $wt, cold $ct; threads that read an image's head: warm $(lookers "$IT_TMP/warm"), cold $(lookers "$IT_TMP/cold")"
  check_eq "warm tree, program paged out: nothing read ahead (strace)" 0 "$wa"
  check "cold tree: subdirectories read ahead (strace: 1024-byte getdents64)" test "$ca" -gt 0
  ba=$(ahead "$IT_TMP/both")
  note "read-ahead listings with the program paged out too: $ba"
  check "cold tree, program paged out: subdirectories read ahead (strace)" test "$ba" -gt 0
  # Warm: the walk, 4 looks and the 2 host scans; cold: 8 read-ahead threads and at least one
  # look thread more (the first look that read the disk starts one).
  check "cold tree: the read-ahead's 8 threads and a grown looks' pool (tasks: warm $wt, cold $ct)" \
    test "$ct" -ge $((wt + 9))
else
  note "SKIP cold tree read-ahead checks: strace is missing or cannot trace here (scripts/setup.sh installs it; ptrace may be forbidden)"
fi

# --- no thread may be started (a cgroup's pids.max): the same audit, slower (issue 16) ------------
# Oracle: the cgroup's own count of refused forks (pids.events "max"), and the warm run.
if one_task_cgroup; then
  remount_btrfs
  # The binary itself: the harness's wrapper forks a tee (its JSON is not kept for the schema
  # check: the same document as the warm run's, which is).
  ONE=$(in_one_task "$VMCSUM_REAL" "${AUDIT_T[@]:1}" 2>"$IT_TMP/one.err") && rc=0 || rc=$?
  refused=$(one_task_refused)
  note "one task only: audit exit $rc, forks refused by the cgroup: ${refused:-0}"
  check "one task only: the cgroup refused threads (pids.events)" test "${refused:-0}" -gt 0
  check_eq "one task only: the same images as warm" "$(images_of "$WARM")" "$(images_of "$ONE")"
  check_eq "one task only: the same problems as warm" "$(jq -c '.problems' <<<"$WARM")" "$(jq -c '.problems' <<<"$ONE")"
  check_eq "one task only: nothing on stderr" "" "$(cat "$IT_TMP/one.err")"
  check_eq "one task only: the warm run's exit status" "$warm_rc" "$rc"
else
  note "SKIP one-task audit: no pids cgroup controller can be used here"
fi

# --- a command line is anyone's to write: only a QEMU that can be the image's is evidence -------
# nobody's process named like QEMU (argv[0]) names root's 0600 image with cache=none and a
# missing disk; root's own such process names the same image and another missing disk (the
# control). The image's configurations list root's alone; only root's missing disk is a problem.
mkdir -m 0700 "$S/qemuonly"
head -c 2M /dev/urandom >"$S/qemuonly/secret.raw"
chmod 0600 "$S/qemuonly/secret.raw"
fake_qemu() { # USER DRIVE... : a process of USER whose argv[0] is qemu-system-x86_64
  local user=$1
  shift
  local args=()
  for d in "$@"; do args+=(-drive "file=$d,format=raw,cache=none"); done
  # shellcheck disable=SC2016 # the child's own script; "; :" keeps bash from exec'ing sleep
  setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups \
    bash -c 'exec -a qemu-system-x86_64 bash -c "sleep 120; :" _ "$@"' _ "${args[@]}" \
    </dev/null >/dev/null 2>&1 &
  FAKE=$!
  bg_track "$FAKE"
}
fake_qemu nobody "$S/qemuonly/secret.raw" "$S/qemuonly/nobodys-missing.raw"
fake_nobody=$FAKE
fake_qemu root "$S/qemuonly/secret.raw" "$S/qemuonly/roots-missing.raw"
fake_root=$FAKE
sleep 0.5
set +e
JQ=$("$VMCSUM" --json audit --kernel-log '' "$S/qemuonly" 2>/dev/null)
rc=$?
set -e
check_eq "fake QEMUs: the image's configurations are root's QEMU's only" "qemu:$fake_root" \
  "$(jq -r '[.images[] | select(.path | endswith("/secret.raw")) | .configured[].source] | join(" ")' <<<"$JQ")"
check_eq "fake QEMUs: root's missing disk is a problem, nobody's is not; exit 3" "1 0 3" \
  "$(jq '[.problems[] | select(.path | endswith("roots-missing.raw"))] | length' <<<"$JQ") $(jq '[.problems[] | select(.path | endswith("nobodys-missing.raw"))] | length' <<<"$JQ") $rc"
for p in $fake_nobody $fake_root; do
  pkill -P "$p" 2>/dev/null || true # its sleep
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  bg_untrack "$p"
done

# --- a relative drive path is QEMU's, not vmcsum's -------------------------------------------------
# root's QEMU opened -drive file=secret.raw in its directory, then (like -daemonize) went to "/".
# vmcsum runs in a directory holding another secret.raw (the decoy): the drive is the file the
# QEMU holds open (its /proc/PID/fd, the kernel's word), never the decoy nor /secret.raw.
mkdir "$S/decoydir"
head -c 1M /dev/urandom >"$S/decoydir/secret.raw"
# shellcheck disable=SC2016 # the child's own script
(cd "$S/qemuonly" && exec bash -c 'exec 3<>secret.raw; cd /; exec -a qemu-system-x86_64 bash -c "sleep 120; :" _ -drive file=secret.raw,format=raw,cache=none' \
  </dev/null >/dev/null 2>&1) &
rel_qemu=$!
bg_track "$rel_qemu"
sleep 0.5
JR=$(cd "$S/decoydir" && "$VMCSUM" --json audit --kernel-log '' "$S/qemuonly" "$S/decoydir" 2>/dev/null || true)
check_eq "relative drive: the file QEMU holds is its image (cache none), the decoy in vmcsum's cwd is not" \
  "qemu:$rel_qemu none|" \
  "$(jq -r '[.images[] | select(.path | endswith("qemuonly/secret.raw")) | .configured[] | "\(.source) \(.cache)"] | join(" ")' <<<"$JR")|$(jq -r '[.images[] | select(.path | endswith("decoydir/secret.raw")) | .configured[].source] | join(" ")' <<<"$JR")"
pkill -P "$rel_qemu" 2>/dev/null || true
kill "$rel_qemu" 2>/dev/null || true
wait "$rel_qemu" 2>/dev/null || true
bg_untrack "$rel_qemu"

# --- an image whose head reads as EIO: audit's own read of it is evidence, from the first run ------
# Every copy of its first sector overwritten below btrfs (the kernel's EIO is the oracle). The old
# audit guessed its format from the name, found nothing (exit 0), and its read left log lines that
# made the next run critical: each run now says so itself.
dd if=/dev/urandom of="$MNT/eio.raw" bs=1M count=2 status=none
sync
damage_sectors "$MNT/eio.raw" 0 1 all
check_fails "EIO head: the kernel refuses to read it (dd, O_DIRECT)" \
  dd if="$MNT/eio.raw" of=/dev/null bs=4096 count=1 iflag=direct status=none
for run in 1 2; do
  set +e
  JE=$("$VMCSUM" --json audit --kernel-log '' "$MNT/eio.raw" 2>/dev/null)
  rc=$?
  set -e
  check_eq "EIO head, run $run: read-error critical, format unknown, exit 2" "critical unknown 2" \
    "$(finding_sev "$JE" eio.raw read-error) $(jq -r '.images[0].format' <<<"$JE") $rc"
done

check_schema --by-name "$IT_TMP"/json-docs/*
finish
