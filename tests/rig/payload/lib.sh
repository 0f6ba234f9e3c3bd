# Helpers for the dom0 side of the rig (sourced by dom0-main.sh and the
# test files). Output conventions the host (xtask) parses:
#   RIG-TEST-BEGIN <test>     RIG-TEST-END <test>
#   RIG-RESULT <test> PASS|FAIL|SKIP <detail>
#   RIG-BENCH backend=<name> metric=<metric> value=<number> [unit=<unit>]

now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
log() { echo "RIG[$(now)] $*"; }

PASSED=0
FAILED=0
SKIPPED=0
pass() { # pass TEST detail...
  local test=$1; shift
  echo "RIG-RESULT $test PASS $*"
  PASSED=$((PASSED + 1))
}
# skip TEST REASON: the test cannot run with what this boot has (say, images
# built without what it needs); neither a pass nor a failure.
skip() {
  local test=$1; shift
  echo "RIG-RESULT $test SKIP $*"
  SKIPPED=$((SKIPPED + 1))
}
# fail TEST STEP DETAIL [DOMAIN...]: report which step failed and why, then
# leave the evidence in the serial log: the console tail of every domain
# named, and the toolstack's view of the domains.
fail() {
  local test=$1 step=$2 detail=$3; shift 3
  echo "RIG-RESULT $test FAIL step '$step': $detail"
  FAILED=$((FAILED + 1))
  local domain
  for domain in "$@"; do dump_console "$domain" 40; done
  echo "----- xl list -----"; xl list 2>&1
}

# wait_for SECS COMMAND...: poll every 0.5 s until COMMAND succeeds, for at
# most SECS seconds of dom0's clock (however long COMMAND itself takes).
wait_for() {
  local deadline
  deadline=$(awk -v a="$(now)" -v s="$1" 'BEGIN {print a + s}'); shift
  while :; do
    "$@" && return 0
    awk -v d="$deadline" -v n="$(now)" 'BEGIN {exit !(n >= d)}' && return 1
    sleep 0.5
  done
}

console_log() { echo "/var/log/xen/console/guest-$1.log"; }
console_has() { grep -qE "$2" "$(console_log "$1")" 2>/dev/null; }
dump_console() {
  echo "----- console of $1 (last ${2:-40} lines) -----"
  tail -n "${2:-40}" "$(console_log "$1")" 2>/dev/null | tr -d '\r' | sed "s/^/  [$1] /"
  echo "----- end of console of $1 -----"
}

# Guest steps (see guest/domu-steps): the line a guest printed for step N.
step_line() { grep -aE "^DOMU-STEP $2 " "$(console_log "$1")" 2>/dev/null | tail -1 | tr -d '\r'; }
step_done() { [ -n "$(step_line "$1" "$2")" ]; }
# wait_step DOMAIN N SECS: wait until step N reported; succeed when it said OK.
wait_step() {
  wait_for "$3" step_done "$1" "$2" || return 1
  step_line "$1" "$2" | grep -q "^DOMU-STEP $2 [a-z]* OK"
}
step_value() { step_line "$1" "$2" | grep -o "$3=[^ ]*" | head -1 | cut -d= -f2-; }

domain_exists() { xl domid "$1" >/dev/null 2>&1; }
# True when xl reports the domain as crashed ('c') or dying ('d').
domain_crashed() { xl list "$1" 2>/dev/null | awk 'NR == 2 {exit !($5 ~ /[cd]/)}'; }
destroy_domain() { domain_exists "$1" && xl destroy "$1" >/dev/null 2>&1; true; }
# console_settled DOMAIN REGEX: the console has a line matching REGEX, or
# the domain is gone or crashed and no such line will come.
console_settled() { console_has "$1" "$2" || ! domain_exists "$1" || domain_crashed "$1"; }

# pci_assignable ADDRESS: hand the PCI function at ADDRESS to pciback (from
# whichever dom0 driver had it), unless pciback has it already. The function
# must not belong to a running domain.
pci_assignable() {
  modprobe xen-pciback 2>/dev/null
  xl pci-assignable-list | grep -q "$1" && return 0
  xl pci-assignable-add "$1"
}

# driver_domain_create TEST NAME CONFIG [WORDS]: xl create one of our driver
# domains from /rig/xl-configs/CONFIG.cfg, booting /rig/domains/NAME, with
# WORDS added to its command line, on a fresh console log; fail TEST if xl
# create fails. Waiting for the domain to be ready is the caller's.
driver_domain_create() {
  local test=$1 name=$2 config=$3
  destroy_domain "$name"
  sed -E -e "s|^[[:space:]]*kernel[[:space:]]*=.*|kernel = \"/rig/domains/$name\"|" \
         -e "s|^([[:space:]]*extra[[:space:]]*=[[:space:]]*\"[^\"]*)\"|\\1 ${4:-}\"|" \
    "/rig/xl-configs/$config.cfg" > "/tmp/$config.cfg"
  grep '^extra' "/tmp/$config.cfg"
  rm -f "$(console_log "$name")"
  if ! xl create "/tmp/$config.cfg" > "/tmp/$config.create.log" 2>&1; then
    cat "/tmp/$config.create.log"
    fail "$test" "xl create $config.cfg" "$(tail -2 "/tmp/$config.create.log" | tr '\n' ' ')"; return 1
  fi
}

GUEST_KERNEL=/rig/vmlinux
GUEST_RAMDISK=/rig/initramfs.cpio.gz
# The tools disk (fio, iperf3) is QEMU's 5th disk, /dev/vde in dom0; a guest
# that needs the tools gets it as xvdz and rig.tools=1 on its command line.
TOOLS_DISK="'format=raw,vdev=xvdz,access=ro,script=/rig/phy-hotplug,target=/dev/vde'"
# guest_config NAME STEPS [MEMORY_MIB] [XL_LINES] [VCPUS] [KERNEL_ARGS]
guest_config() {
  cat > "/tmp/$1.cfg" <<CFG
name = "$1"
kernel = "$GUEST_KERNEL"
ramdisk = "$GUEST_RAMDISK"
extra = "console=hvc0 quiet loglevel=4 rig.steps=$2 $6"
memory = ${3:-128}
vcpus = ${5:-1}
on_poweroff = "destroy"
on_crash = "destroy"
$4
CFG
}
# start_guest NAME ...: guest_config, then xl create with a fresh console log.
start_guest() {
  guest_config "$@"
  destroy_domain "$1"
  rm -f "$(console_log "$1")"
  log "creating $1 (steps $2)"
  timeout 300 xl create "/tmp/$1.cfg" >"/tmp/$1.create.log" 2>&1 || { cat "/tmp/$1.create.log"; return 1; }
}
# start_tools_guest NAME STEPS MEMORY [XL_LINES]: a guest with fio and iperf3.
start_tools_guest() {
  start_guest "$1" "$2" "$3" "disk = [ $TOOLS_DISK ]
$4" 1 rig.tools=1
}

# Xenstore paths of a vbd, by Linux's numbering of xvd<letter> (202 << 8 | n << 4).
vbd_id() { local letter=${1#xvd}; echo $(( (202 << 8) | (($(printf '%d' "'$letter") - 97) << 4) )); }
backend_vbd_path() { echo "/local/domain/$(xl domid "$1")/backend/vbd/$2/$(vbd_id "$3")"; }
xs_equals() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
xs_exists() { xenstore-read "$1" >/dev/null 2>&1; }
# interface_with_mac MAC SECONDS: prints the name of dom0's network
# interface with address MAC, waiting up to SECONDS for it to appear;
# fails if none does.
interface_with_mac() {
  local device rounds=$(($2 * 2))
  while [ $rounds -gt 0 ]; do
    for device in /sys/class/net/*; do
      [ "$(cat "$device/address" 2>/dev/null)" = "$1" ] && { basename "$device"; return 0; }
    done
    sleep 0.5
    rounds=$((rounds - 1))
  done
  return 1
}

# diag_domain NAME: registers and a stack of a (stuck) domain via xenctx;
# symbols from /rig/NAME.map when shipped, else dom0's kallsyms (PV Linux
# kernels are not relocated, so these fit the guests too).
diag_domain() {
  local id
  id=$(xl domid "$1" 2>/dev/null) || return 0
  echo "----- diagnosis of $1 (domid $id) -----"
  xl list "$1"; xl vcpu-list "$1"
  local map=/rig/$1.map
  [ -f "$map" ] || { map=/tmp/kallsyms; grep -v '\[' /proc/kallsyms > "$map"; }
  timeout 30 /usr/lib/xen-4.17/bin/xenctx -s "$map" -S -C "$id" 2>&1 | head -60
  echo "----- end of diagnosis of $1 -----"
}

# The toolstack, as Debian's /etc/init.d/xen would start it.
xen_kernel_interfaces() {
  modprobe -a xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd 2>/dev/null
  mountpoint -q /proc/xen || mount -t xenfs xenfs /proc/xen
  mkdir -p /run/xen /run/xenstored /var/log/xen/console /var/lib/xen
}
