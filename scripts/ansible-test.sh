#!/usr/bin/env bash
# Runs contrib/ansible/vmcsum.yml on this machine (ansible-playbook -c local -i localhost,) with a
# built package: once on a clean image (the play succeeds and the controller holds a valid audit
# document) and once on an image a VM configuration opens with cache=none under a kernel that
# writes O_DIRECT zero-copy (critical: the play fails, naming the image), and once more with a
# path that does not exist beside it (exit 3 outranks 2: the play fails naming both, and the
# document, which still holds the critical image, is collected). Root, loop devices and
# btrfs are needed; without them it reports a skip, never a pass.
#   scripts/ansible-test.sh DEB_DIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
debdir=${1:?usage: $0 DEB_DIR}
deb=$(ls "$debdir"/vmcsum_*_*.deb | grep -v dbgsym | head -1)

if [[ $(id -u) -ne 0 ]] || ! command -v ansible-playbook >/dev/null || ! losetup -f >/dev/null 2>&1; then
  echo "skip - ansible example: needs root, ansible-playbook and a free loop device"
  exit 0
fi

work=$(mktemp -d /tmp/vmcsum-ansible.XXXXXX)
loop=""
cleanup() {
  mountpoint -q "$work/mnt" && umount "$work/mnt"
  [[ -n $loop ]] && losetup -d "$loop"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq vmcsum >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
status=0
ok() { echo "ok - $*"; }
fail() { echo "FAIL - $*"; status=1; }

truncate -s 256M "$work/fs.img"
loop=$(losetup -f --show "$work/fs.img")
mkfs.btrfs -q -f "$loop" >/dev/null 2>&1
mkdir "$work/mnt" "$work/libvirt" "$work/libvirt/qemu" "$work/reports"
mount -t btrfs "$loop" "$work/mnt"
mkdir "$work/mnt/clean" "$work/mnt/risky"
dd if=/dev/urandom of="$work/mnt/clean/vm.raw" bs=1M count=4 status=none
dd if=/dev/urandom of="$work/mnt/risky/vm.raw" bs=1M count=4 status=none
cat >"$work/libvirt/qemu/risky.xml" <<XML
<domain type='kvm'><name>risky</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/>
<source file='$work/mnt/risky/vm.raw'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>
XML

play() {
  ANSIBLE_NOCOLOR=1 ANSIBLE_HOST_KEY_CHECKING=0 ANSIBLE_LOCALHOST_WARNING=0 \
    ansible-playbook -c local -i localhost, "$here/contrib/ansible/vmcsum.yml" \
    -e "vmcsum_deb=$deb" -e "vmcsum_report_dir=$work/reports" -e "$1" >"$work/play.log" 2>&1
}

# 1. Clean: no critical finding, the play passes, the document is kept on the controller.
if play '{"vmcsum_audit_args": ["--kernel-log", "", "--libvirt-dir", "'"$work/libvirt-empty"'", "'"$work/mnt/clean"'"]}'; then
  ok "clean host: the play succeeds"
else
  tail -30 "$work/play.log"; fail "clean host: the play failed"
fi
if [[ $(dpkg-query -W -f='${Status}' vmcsum 2>/dev/null) == "install ok installed" ]]; then
  ok "the play installed the package"
else
  fail "the package is not installed after the play"
fi
if [[ -L /etc/systemd/system/timers.target.wants/vmcsum-audit.timer &&
  ! -e /etc/systemd/system/timers.target.wants/vmcsum-scrub.timer ]]; then
  ok "the audit timer is enabled, the scrub timer is not"
else
  fail "timers: $(ls /etc/systemd/system/timers.target.wants/ 2>&1 | tr '\n' ' ')"
fi
doc=$work/reports/localhost.audit.json
if jq -e '.schema | startswith("vmcsum.audit/")' "$doc" >/dev/null 2>&1 &&
  python3 "$here/tests/schema/validate.py" "$here/tests/schema/audit.json" "$doc" >/dev/null 2>&1; then
  ok "the controller holds a valid audit document"
else
  fail "no valid audit document at $doc"
fi

# 2. Critical: cache=none under 6.1 (zero-copy O_DIRECT to checksummed files): the play fails.
if play '{"vmcsum_audit_args": ["--kernel-log", "", "--kernel-release", "6.1.0", "--libvirt-dir", "'"$work/libvirt"'", "'"$work/mnt/risky"'"]}'; then
  fail "critical host: the play succeeded"
else
  if grep -q "critical findings on" "$work/play.log" && grep -q "risky/vm.raw" "$work/play.log"; then
    ok "critical host: the play fails and names the image"
  else
    tail -30 "$work/play.log"; fail "critical host: the play failed for another reason"
  fi
fi
if [[ $(jq -r '.exit_code' "$doc" 2>/dev/null) == 2 ]]; then
  ok "the critical document was collected too"
else
  fail "the critical document was not collected"
fi

# 3. The same critical image and a path that does not exist: exit 3, and the play still names the
# image (the document holds it) beside the path it could not audit.
if play '{"vmcsum_audit_args": ["--kernel-log", "", "--kernel-release", "6.1.0", "--libvirt-dir", "'"$work/libvirt"'", "'"$work/mnt/risky"'", "'"$work/mnt/gone"'"]}'; then
  fail "incomplete critical host: the play succeeded"
else
  if grep -q "critical findings on" "$work/play.log" && grep -q "risky/vm.raw" "$work/play.log" &&
    grep -q "could not complete (exit 3)" "$work/play.log" && grep -q "mnt/gone" "$work/play.log"; then
    ok "incomplete critical host: the play fails naming the image and the path not audited"
  else
    tail -30 "$work/play.log"; fail "incomplete critical host: the play failed for another reason"
  fi
fi
if [[ $(jq -r '.exit_code' "$doc" 2>/dev/null) == 3 ]] &&
  jq -e '[.images[] | select(.path | endswith("risky/vm.raw"))] | length == 1' "$doc" >/dev/null; then
  ok "the incomplete document was collected, with the critical image"
else
  fail "the incomplete document was not collected"
fi
# Remove the links the play made (the package purge in cleanup removes the rest).
systemctl disable vmcsum-audit.timer >/dev/null 2>&1 || true
exit "$status"
