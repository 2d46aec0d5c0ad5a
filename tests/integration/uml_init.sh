#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# PID 1 of a user-mode-linux guest started by uml_run (uml_lib.sh). Not meant to be run by hand.
#
# The guest's root is the host's / through hostfs, read-only, so host binaries run unchanged.
# Parameters arrive as environment variables (unknown KEY=value words on the kernel command line):
#   UML_RESULT   host directory, mounted writable at the same path; receives .uml_output (the
#                payload's stdout and stderr) and .uml_status (its exit status, written last)
#   UML_PAYLOAD  script to run; executed directly if executable, else with /bin/sh
# Every other KEY=value is left in the environment for the payload.
# PID 1 must never exit (the kernel would panic), so every path ends in power_off.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

power_off() {
  sync
  # SysRq 'o' is kernel_power_off(): no userspace needed. Writing to /proc/sysrq-trigger works
  # whatever kernel.sysrq says. It runs from a workqueue, so wait for it.
  if [ -w /proc/sysrq-trigger ]; then
    echo o >/proc/sysrq-trigger
    sleep 5
  fi
  # Fallbacks: systemd's "poweroff -f" calls reboot(2) itself without talking to an init;
  # perl-base is essential on Debian (169 = reboot on x86-64, RB_POWER_OFF = 0x4321fedc).
  poweroff -f >/dev/null 2>&1
  perl -e 'syscall(169, 0xfee1dead, 672274793, 0x4321fedc)' >/dev/null 2>&1
  echo "uml_init: could not power off" >&2
  while :; do sleep 3600; done
}

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev

if [ -z "$UML_RESULT" ] || ! mount -t hostfs -o "$UML_RESULT" none "$UML_RESULT"; then
  # Nothing can be reported; uml_run sees no status file and says so.
  echo "uml_init: cannot mount result directory '$UML_RESULT'" >&2
  power_off
fi

status=0
{
  if [ -z "$UML_PAYLOAD" ] || [ ! -f "$UML_PAYLOAD" ]; then
    echo "uml_init: payload '$UML_PAYLOAD' not found"
    status=127
  elif [ -x "$UML_PAYLOAD" ]; then
    "$UML_PAYLOAD" </dev/null
    status=$?
  else
    /bin/sh "$UML_PAYLOAD" </dev/null
    status=$?
  fi
} >"$UML_RESULT/.uml_output" 2>&1

# Written last and renamed into place: uml_run trusts the status only if the file is complete.
echo "$status" >"$UML_RESULT/.uml_status.tmp"
mv "$UML_RESULT/.uml_status.tmp" "$UML_RESULT/.uml_status"
sync
umount "$UML_RESULT" 2>/dev/null
power_off
