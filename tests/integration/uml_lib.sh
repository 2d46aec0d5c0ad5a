# SPDX-License-Identifier: GPL-2.0-or-later
# shellcheck shell=bash
# uml_lib.sh: run payloads inside a user-mode-linux 6.1 guest (Debian's linux.uml), whose btrfs
# still has the O_DIRECT false-checksum bug that the host kernel fixed (968f19c5b1b7), and make
# btrfs images with REAL false checksum mismatches. Source it from bash:
#     . "$(dirname "$0")/uml_lib.sh"
#
# The guest's root file system is the host's / through hostfs, read-only: host binaries (mount,
# btrfs, dio_race, vmcsum) run inside unchanged, and payload scripts are host paths. Booting needs
# no root, but ptrace must be allowed (UML 6.1 runs guest processes under ptrace). A boot takes
# 2.5 to 6 s depending on host load. The functions return a status; none of them exits or sets
# traps in the caller (their bodies run in subshells); uml_available caches its answer in
# _UML_AVAILABLE.
#
#   uml_available
#       Returns 0 if a guest can be booted here. Otherwise prints one line with the reason to
#       stdout and returns 1 (in a test: `reason=$(uml_available) || skip "$reason"`). Checks the
#       kernel binary, timeout(1), the ptrace policy, the scratch and memory directories and,
#       unless UML_PROBE=0, boots a guest once to prove it (cached in the calling shell).
#
#   uml_run [IMG...] -- SCRIPT [KEY=value...]
#       Boots linux.uml with IMG, IMG2... as ubd0, ubd1... (/dev/ubda, /dev/ubdb... in the guest)
#       and runs SCRIPT (a host path; executed directly if executable, else with /bin/sh) from
#       uml_init.sh, the guest's PID 1, which mounts /proc, /sys and /dev first and powers the
#       guest off afterwards. KEY=value words become environment variables of SCRIPT (keys:
#       [A-Za-z_][A-Za-z0-9_]*; values without whitespace or commas: they travel on the kernel
#       command line). SCRIPT also gets UML_RESULT, a host directory mounted writable at the same
#       path (see UML_OUTDIR); everything else of the host is read-only. SCRIPT's stdout and
#       stderr are printed to stdout once the guest is off. Returns SCRIPT's exit status; 125 if
#       the guest never reported one (boot failure, panic, timeout: the console's tail goes to
#       stderr); 2 on a usage error. linux.uml runs under timeout(1) with a private HOME (~/.uml)
#       and TMPDIR (its memory file), both removed afterwards, also on INT/TERM.
#
#   uml_make_race_image IMG SIZE_MIB PROFILE [IMG2]
#       The fixture for tests that need REAL false checksum mismatches. Replaces IMG with a sparse
#       file of SIZE_MIB MiB (256 is plenty), runs mkfs.btrfs -d PROFILE -m PROFILE on it
#       (PROFILE: single or dup on IMG alone; raid1 over IMG and IMG2, which is replaced the same
#       way: ubda and ubdb in the guest), then boots a guest that mounts it and runs
#         dio_race --size N --block B               /csum_file    checksummed
#         dio_race --size N --block B --nocow-first /nocow_file   NOCOW, hence NODATASUM
#       (N = UML_RACE_MIB MiB, B = UML_RACE_BLOCK bytes), syncs and unmounts. Prints dio_race's
#       summary lines and lsattr of both files. Returns 0 when both files were written; 2 on a
#       usage error (dio_race or mkfs.btrfs missing included); else the failure's status (125:
#       the guest never reported). Needs $VMCSUM_TOOLS/dio_race.
#       The image is then unmounted and consistent except for csum_file's data checksums:
#       - nocow_file always reads back without error (the control);
#       - many blocks of csum_file fail their checksum: with the defaults (8 MiB, 1 MiB writes,
#         dup) 568 to 2048 of its 2048 blocks were bad on both copies in each of 32 runs, idle
#         or busy host. A block bad on one copy only is nearly always bad on the later one (the
#         copies are written one after the other from the same, still changing buffer), and the
#         two copies of a block bad on both differ (30 of 30 sampled);
#       - the count varies from run to run, so assert "at least one", never a number, and a
#         guest kernel with the fix gives none: check on the host with
#         `btrfs check --check-data-csum IMG` (exit 1; one "mirror M bytenr L csum ..." line on
#         stderr per bad copy) and skip when it lists nothing;
#       - UML_RACE_DELAY_MS=N makes it deterministic instead: every block of csum_file ends up
#         bad on every copy (2048 of 2048 in each run tried);
#       - raid1 over two devices: btrfs sends the copies out in stripe order but each ubd device
#         copies the buffer on its own schedule, so any copy may be the bad one: measured (issue
#         19, eight trials) sectors where mirror 1 alone fails in every trial, now and then one
#         where mirror 2 alone fails, the rest bad on both copies. Those two copies often hold the
#         SAME wrong bytes: in one of eight raid1 images made by the tests (2026-12-03, busy host)
#         no sector had two different bad copies (484 mirror-1-alone, 512 identical), so a test
#         that needs the race's signature must look for it (uml_race_verdicts.sh). On dup, 8 of
#         8 images had it, and 0 to 415 sectors where mirror 2 alone fails. UML_RACE_DELAY_MS
#         was not tried on raid1.
#
#   Example, in a test that needs real false mismatches:
#       reason=$(uml_available) || { echo "SKIP: $reason"; exit 77; }
#       uml_make_race_image "$work/race.img" 256 dup || { echo "FAIL: no race image"; exit 1; }
#       n=$(btrfs check --check-data-csum "$work/race.img" 2>&1 | grep -c '^mirror ')
#       ((n > 0)) || { echo "SKIP: bug not reproduced (kernel may carry the backport)"; exit 77; }
#
# Environment (all optional):
#   UML_KERNEL     kernel binary (default: linux.uml from PATH, else /usr/bin/linux.uml)
#   UML_TIMEOUT    seconds before a guest is killed (default 120)
#   UML_MEM        guest memory (default 128M)
#   UML_TMPBASE    where scratch directories go (default $TMPDIR, else /tmp); must not be under
#                  /dev, /proc or /sys, which the guest does not see
#   UML_MEMBASE    where UML's memory file goes (default /dev/shm if usable, else the scratch
#                  directory); must allow exec mappings; tmpfs spares the host its writeback
#   UML_OUTDIR     host directory to use as UML_RESULT instead of a scratch one, to keep files
#                  the payload writes (same restriction as UML_TMPBASE)
#   UML_CONSOLE_LOG  if set, the guest's console (its kernel log) is copied to this file
#   UML_PROBE      0 = uml_available skips its test boot
#   UML_DIO_RACE   dio_race binary (default $VMCSUM_TOOLS/dio_race)
#   UML_RACE_MIB   MiB written to each file by uml_make_race_image (default 8)
#   UML_RACE_BLOCK bytes per O_DIRECT write (default 1048576). Not 4096: a block goes bad only if
#                  the guest's modifying thread runs before the host thread of the ubd driver has
#                  copied the request, and a 4 KiB request is copied so quickly that on a busy
#                  host (parallel compiles) 8 MiB sometimes gave only 4 bad blocks; 1 MiB
#                  requests never gave fewer than hundreds.
#   UML_RACE_DELAY_MS  if not 0, put a dm-delay target (write delay N ms) between btrfs and
#                  /dev/ubda in the guest, so every write waits after being checksummed and the
#                  modifying thread always wins (modules from /usr/lib/uml/modules)
#
# Facts behind these choices: docs/reproducing-the-bug.md.

_uml_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

_uml_kernel() {
  if [[ -n ${UML_KERNEL-} ]]; then
    echo "$UML_KERNEL"
  else
    command -v linux.uml 2>/dev/null || echo /usr/bin/linux.uml
  fi
}

_uml_tmpbase() {
  echo "${UML_TMPBASE:-${TMPDIR:-/tmp}}"
}

# Prints why DIR cannot hold UML's memory file (writable, exec mappings allowed), or nothing.
_uml_exec_problem() {
  if [[ ! -d $1 || ! -w $1 ]]; then
    echo "$1 is not a writable directory"
    return
  fi
  if command -v findmnt >/dev/null 2>&1; then
    local opts
    opts=$(findmnt -no OPTIONS -T "$1" 2>/dev/null)
    if [[ ,$opts, == *,noexec,* ]]; then
      echo "$1 is on a noexec mount (UML maps its memory file with PROT_EXEC)"
    fi
  fi
}

# Prints why the host directory DIR cannot be used by the guest, or nothing. The guest mounts
# its own /dev, /proc and /sys over the host's, so host paths below them are invisible to it.
_uml_guest_dir_problem() {
  local dir
  dir=$(readlink -f -- "$1" 2>/dev/null) || dir=$1
  case $dir in
    /dev | /dev/* | /proc | /proc/* | /sys | /sys/*)
      echo "$1 is under /dev, /proc or /sys, which the guest does not see"
      return
      ;;
    *[[:space:],]*)
      echo "$1 contains whitespace or a comma (paths travel on the kernel command line)"
      return
      ;;
  esac
}

# Prints the directory for UML's memory file, or nothing to use the scratch directory.
_uml_membase() {
  if [[ -n ${UML_MEMBASE-} ]]; then
    echo "$UML_MEMBASE"
  elif [[ -z $(_uml_exec_problem /dev/shm) ]]; then
    echo /dev/shm
  fi
}

uml_available() {
  if [[ -n ${_UML_AVAILABLE-} ]]; then
    [[ $_UML_AVAILABLE == yes ]] && return 0
    echo "$_UML_AVAILABLE"
    return 1
  fi
  local reason
  reason=$(_uml_available_reason)
  _UML_AVAILABLE=${reason:-yes}
  [[ $_UML_AVAILABLE == yes ]] && return 0
  echo "$_UML_AVAILABLE"
  return 1
}

# Prints the reason UML cannot run, or nothing.
_uml_available_reason() {
  local kernel problem scope
  kernel=$(_uml_kernel)
  if [[ ! -x $kernel ]]; then
    echo "user-mode-linux kernel $kernel not found (Debian package user-mode-linux)"
    return
  fi
  if ! command -v timeout >/dev/null 2>&1; then
    echo "timeout(1) not found"
    return
  fi
  if ! "$kernel" --version >/dev/null 2>&1; then
    echo "$kernel does not run on this machine"
    return
  fi
  if [[ -r /proc/sys/kernel/yama/ptrace_scope ]]; then
    scope=$(</proc/sys/kernel/yama/ptrace_scope)
    if [[ $scope == 3 ]]; then
      echo "ptrace is disabled (kernel.yama.ptrace_scope=3); UML 6.1 needs it"
      return
    fi
  fi
  local base membase
  base=$(_uml_tmpbase)
  problem=$(_uml_guest_dir_problem "$base")
  [[ -n $problem ]] || problem=$(_uml_exec_problem "$base")
  if [[ -n $problem ]]; then
    echo "scratch directory unusable: $problem (set UML_TMPBASE)"
    return
  fi
  membase=$(_uml_membase)
  if [[ -n $membase ]]; then
    problem=$(_uml_exec_problem "$membase")
    if [[ -n $problem ]]; then
      echo "memory directory unusable: $problem (set UML_MEMBASE)"
      return
    fi
  fi
  if [[ ${UML_PROBE-1} != 0 ]]; then
    _uml_probe_boot
  fi
}

# Boots a guest that only checks it got its parameter; prints the reason on failure.
_uml_probe_boot() (
  local dir rc out
  dir=$(mktemp -d "$(_uml_tmpbase)/uml-probe.XXXXXX") || {
    echo "cannot create a scratch directory in $(_uml_tmpbase)"
    exit 0
  }
  trap 'rm -rf -- "$dir"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # shellcheck disable=SC2016 # expanded by the guest
  printf '%s\n' '#!/bin/sh' 'test "$UML_PROBE_TOKEN" = ok && echo uml-probe-ok' >"$dir/probe.sh"
  out=$(UML_TIMEOUT=60 UML_OUTDIR='' UML_CONSOLE_LOG="$dir/console.log" \
    uml_run -- "$dir/probe.sh" UML_PROBE_TOKEN=ok 2>&1)
  rc=$?
  if [[ $rc != 0 || $out != *uml-probe-ok* ]]; then
    # UML 6.1 hands the host's ptrace a fixed-size XSAVE buffer; a host CPU with a larger
    # XSAVE state (AMX's tile data: 8 KiB more) refuses it (EFAULT, the kernel's
    # xstateregs_set() wants exactly the full size) and init dies at its first context switch.
    if grep -q 'ptrace set fp regs failed' "$dir/console.log" 2>/dev/null; then
      echo "$(_uml_kernel) cannot run user processes on this CPU: 'ptrace set fp regs failed'" \
        "(its XSAVE state is larger than this UML kernel's buffer$(grep -q -w amx_tile /proc/cpuinfo && echo ': the CPU has AMX'));" \
        "a host CPU without AMX runs these tests"
    else
      echo "test boot of $(_uml_kernel) failed (status $rc): $(tail -n 3 <<<"$out" | tr '\n' ' ')"
    fi
  fi
)

# uml_run [IMG...] -- SCRIPT [KEY=value...]
# The body runs in a subshell, so its traps and variables never leak into the caller.
uml_run() (
  local -a images=() args=()
  while (($# > 0)) && [[ $1 != -- ]]; do
    images+=("$1")
    shift
  done
  if (($# < 2)); then
    echo "usage: uml_run [IMG...] -- SCRIPT [KEY=value...]" >&2
    exit 2
  fi
  shift
  local script kernel base problem i img word
  script=$(readlink -f -- "$1") || script=$1
  shift
  kernel=$(_uml_kernel)
  base=$(_uml_tmpbase)
  if [[ ! -f $script ]]; then
    echo "uml_run: payload $script not found" >&2
    exit 2
  fi
  problem=$(_uml_guest_dir_problem "$script")
  if [[ -n $problem ]]; then
    echo "uml_run: payload: $problem" >&2
    exit 2
  fi
  if ((${#images[@]} > 8)); then
    echo "uml_run: at most 8 images (ubd0..ubd7)" >&2
    exit 2
  fi
  for i in "${!images[@]}"; do
    img=$(readlink -f -- "${images[i]}") || img=${images[i]}
    if [[ ! -f $img ]]; then
      echo "uml_run: image ${images[i]} not found" >&2
      exit 2
    fi
    if [[ $img == *[[:space:],]* ]]; then
      echo "uml_run: image path $img contains whitespace or a comma" >&2
      exit 2
    fi
    args+=("ubd$i=$img")
  done
  for word in "$@"; do
    if [[ ! $word =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:],]*$ ]]; then
      echo "uml_run: '$word' is not KEY=value (no whitespace or commas in the value)" >&2
      exit 2
    fi
  done

  local scratch memdir="" membase result console pid="" uml_pid="" urc status
  scratch=$(mktemp -d "$base/uml.XXXXXX") || exit 125
  # Ends exactly the timeout(1) we started: it passes TERM on to linux.uml, which exits at once
  # (timeout sends KILL 10 s later if not). Then removes the scratch directories.
  # shellcheck disable=SC2317 # called from the EXIT trap
  _uml_run_cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      local n
      for ((n = 0; n < 150; n++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
    _uml_reap
    rm -rf -- "$scratch"
    [[ -z $memdir ]] || rm -rf -- "$memdir"
  }
  # linux.uml makes itself the leader of a new process group, and its host processes (one per
  # guest address space) join it. Stopped in mid-fork, one of them can outlive a linux.uml that
  # was sent TERM. The group's id is linux.uml's pid and cannot be reused while the group has
  # members, so this kills exactly what is left of the guest we started.
  # shellcheck disable=SC2317 # called from _uml_run_cleanup
  _uml_reap() {
    if [[ -n $uml_pid ]] && kill -0 -- "-$uml_pid" 2>/dev/null; then
      kill -KILL -- "-$uml_pid" 2>/dev/null
    fi
    uml_pid=""
  }
  trap _uml_run_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  mkdir "$scratch/home" "$scratch/tmp"
  # UML creates its memory file in $TMPDIR and unlinks it at once; tmpfs spares the host
  # writeback of a file-backed guest RAM. The guest never needs to see this directory.
  membase=$(_uml_membase)
  if [[ -n $membase ]]; then
    memdir=$(mktemp -d "$membase/uml-mem.XXXXXX") || exit 125
  fi
  result=${UML_OUTDIR:-$scratch/result}
  mkdir -p -- "$result" || exit 125
  result=$(readlink -f -- "$result")
  problem=$(_uml_guest_dir_problem "$result")
  if [[ -n $problem ]]; then
    echo "uml_run: result directory: $problem" >&2
    exit 2
  fi
  rm -f -- "$result/.uml_status" "$result/.uml_status.tmp" "$result/.uml_output"
  # A private, executable copy: the source tree may lack the x bit or be mounted noexec.
  cp -- "$_uml_lib_dir/uml_init.sh" "$scratch/init" && chmod 755 "$scratch/init" || exit 125
  console=$scratch/console.log

  # shellcheck disable=SC2054 # the comma belongs to con0=fd:0,fd:1
  args+=("mem=${UML_MEM:-128M}" root=/dev/root rootfstype=hostfs rootflags=/ ro
    con0=fd:0,fd:1 con=null "init=$scratch/init"
    "UML_RESULT=$result" "UML_PAYLOAD=$script" "$@")
  # Background + wait, so that INT/TERM traps run at once instead of after the guest.
  HOME=$scratch/home TMPDIR=${memdir:-$scratch/tmp} \
    timeout -k 10 "${UML_TIMEOUT:-120}" "$kernel" "${args[@]}" </dev/null >"$console" 2>&1 &
  pid=$!
  local n
  for ((n = 0; n < 100; n++)); do
    uml_pid=$(pgrep -P "$pid" | head -n 1)
    [[ -z $uml_pid ]] || break
    sleep 0.02
  done
  wait "$pid"
  urc=$?
  pid=""
  _uml_reap

  if [[ -n ${UML_CONSOLE_LOG-} ]]; then
    cp -- "$console" "$UML_CONSOLE_LOG"
  fi
  if [[ -f $result/.uml_output ]]; then
    cat -- "$result/.uml_output"
  fi
  status=""
  if [[ -f $result/.uml_status ]]; then
    status=$(<"$result/.uml_status")
  fi
  if [[ ! $status =~ ^[0-9]+$ ]]; then
    if [[ $urc == 124 ]]; then
      echo "uml_run: guest timed out after ${UML_TIMEOUT:-120} s; console tail:" >&2
    else
      echo "uml_run: guest never reported a status (linux.uml exit $urc); console tail:" >&2
    fi
    tail -n 25 -- "$console" >&2
    exit 125
  fi
  if [[ $urc != 0 ]]; then
    echo "uml_run: note: linux.uml exited with $urc after the payload finished" >&2
  fi
  exit "$status"
)

# The payload of uml_make_race_image (runs inside the guest; parameters as RACE_* variables).
_uml_race_payload() {
  cat <<'EOF'
#!/bin/sh
dev=/dev/ubda
dev2=""
[ "$RACE_DEVICES" = 2 ] && dev2=/dev/ubdb
if [ "$RACE_DELAY_MS" != 0 ]; then
  # dm-delay holds every write bio after btrfs has checksummed it, so the modifying thread
  # always runs before the data reaches the ubd driver. Debian ships the modules here.
  mods=/usr/lib/uml/modules/$(uname -r)/kernel/drivers/md
  insmod "$mods/dm-mod.ko" && insmod "$mods/dm-delay.ko" || exit 1
  sectors=$(blockdev --getsz /dev/ubda) || exit 1
  dmsetup create --noudevsync race_delay \
    --table "0 $sectors delay /dev/ubda 0 0 /dev/ubda 0 $RACE_DELAY_MS" || exit 1
  # No udev in the guest, so no /dev/mapper link; devtmpfs has the dm-N node.
  dev=/dev/dm-$(dmsetup info -c --noheadings -o minor race_delay) || exit 1
  if [ -n "$dev2" ]; then
    sectors=$(blockdev --getsz /dev/ubdb) || exit 1
    dmsetup create --noudevsync race_delay2 \
      --table "0 $sectors delay /dev/ubdb 0 0 /dev/ubdb 0 $RACE_DELAY_MS" || exit 1
    dev2=/dev/dm-$(dmsetup info -c --noheadings -o minor race_delay2) || exit 1
  fi
fi
mnt=$UML_RESULT/mnt
mkdir -p "$mnt" || exit 1
# No udev scans the second device in the guest: name it.
mount -t btrfs ${dev2:+-o "device=$dev2"} "$dev" "$mnt" || exit 1
rc=0
"$RACE_TOOL" --size "$RACE_BYTES" --block "$RACE_BLOCK" "$mnt/csum_file" || rc=1
"$RACE_TOOL" --size "$RACE_BYTES" --block "$RACE_BLOCK" --nocow-first "$mnt/nocow_file" || rc=1
lsattr "$mnt/csum_file" "$mnt/nocow_file"
sync
umount "$mnt" || rc=1
rmdir "$mnt"
if [ "$RACE_DELAY_MS" != 0 ]; then
  dmsetup remove --noudevsync race_delay || rc=1
  if [ -n "$dev2" ]; then
    dmsetup remove --noudevsync race_delay2 || rc=1
  fi
fi
exit $rc
EOF
}

# uml_make_race_image IMG SIZE_MIB PROFILE [IMG2]
uml_make_race_image() (
  if (($# != 3 && $# != 4)); then
    echo "usage: uml_make_race_image IMG SIZE_MIB PROFILE [IMG2]" >&2
    exit 2
  fi
  local img=$1 size_mib=$2 profile=$3 img2=${4-} tool mib block delay dir rc
  tool=${UML_DIO_RACE:-${VMCSUM_TOOLS:+$VMCSUM_TOOLS/dio_race}}
  mib=${UML_RACE_MIB:-8}
  block=${UML_RACE_BLOCK:-1048576}
  delay=${UML_RACE_DELAY_MS:-0}
  if [[ -z $tool || ! -x $tool ]]; then
    echo "uml_make_race_image: dio_race not found (set VMCSUM_TOOLS or UML_DIO_RACE)" >&2
    exit 2
  fi
  tool=$(readlink -f -- "$tool")
  case $profile in
    single | dup)
      if [[ -n $img2 ]]; then
        echo "uml_make_race_image: PROFILE $profile takes one image" >&2
        exit 2
      fi
      ;;
    raid1)
      if [[ -z $img2 ]]; then
        echo "uml_make_race_image: PROFILE raid1 needs IMG2 (two devices)" >&2
        exit 2
      fi
      ;;
    *)
      echo "uml_make_race_image: PROFILE must be single, dup or raid1, not '$profile'" >&2
      exit 2
      ;;
  esac
  if [[ ! $size_mib =~ ^[0-9]+$ || ! $mib =~ ^[0-9]+$ || ! $block =~ ^[0-9]+$ ||
    ! $delay =~ ^[0-9]+$ ]]; then
    echo "uml_make_race_image: SIZE_MIB and UML_RACE_* must be numbers" >&2
    exit 2
  fi
  if ! command -v mkfs.btrfs >/dev/null 2>&1; then
    echo "uml_make_race_image: mkfs.btrfs not found" >&2
    exit 2
  fi

  local -a imgs=("$img")
  [[ -z $img2 ]] || imgs+=("$img2")
  rm -f -- "${imgs[@]}" && truncate -s "${size_mib}M" -- "${imgs[@]}" || exit 1
  # mkfs.btrfs takes regular files as devices, two of them for raid1.
  if ! mkfs.btrfs -q -f -d "$profile" -m "$profile" -- "${imgs[@]}" >/dev/null; then
    echo "uml_make_race_image: mkfs.btrfs -d $profile -m $profile ${imgs[*]} failed" >&2
    exit 1
  fi

  dir=$(mktemp -d "$(_uml_tmpbase)/uml-race.XXXXXX") || exit 1
  trap 'rm -rf -- "$dir"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  _uml_race_payload >"$dir/race.sh"
  # In the foreground: on Ctrl-C the whole process group gets SIGINT, and uml_run, which waits
  # for linux.uml in the background, stops the guest at once; a background job here would
  # ignore SIGINT (bash does that to asynchronous commands of non-interactive shells).
  uml_run "${imgs[@]}" -- "$dir/race.sh" "RACE_TOOL=$tool" "RACE_BYTES=$((mib << 20))" \
    "RACE_BLOCK=$block" "RACE_DELAY_MS=$delay" "RACE_DEVICES=${#imgs[@]}"
  rc=$?
  if ((rc != 0)); then
    echo "uml_make_race_image: guest payload failed (status $rc)" >&2
  fi
  exit "$rc"
)
