# NetBSD's own drivers in our driver domains: images built with the rump
# kernel archives of RUMP_LIBDIR (docs/rumpuser.md) run NetBSD's ld@virtio
# in rumpdisk and its wm(4) in rumpnet. `cargo xtask build` then leaves
# target/domains/netbsd-tier, which travels with the images to
# /rig/domains/. Without it the images hold no NetBSD driver and these
# tests report SKIP once the rig's side of them is checked.
#
# rumpdisk-netbsd: QEMU's legacy virtio-blk at 00:13.0 (xtask's rig)
# passed through to rumpdisk, xl-configs/rumpdisk-netbsd.cfg.
# rumpnet-netbsd: the e1000 wire of tests-rumpnet-e1000.sh, with rumpnet
# driving the NIC at 00:10.0 by wm(4), xl-configs/rumpnet-netbsd.cfg.

NETBSD_TIER=/rig/domains/netbsd-tier
NETBSD_VIRTIO_BLK=0000:00:13.0
# The name rumpdisk-netbsd.cfg serves ld0 under (disk=ld0:netbsd:ld0).
NETBSD_DISK=ld0
# The domains' verdicts on NetBSD's units, once the rump kernel has booted.
NETBSD_DISK_VERDICT='rumpdisk: NetBSD (ld0 ready|disk [^ ]+ \(ld0\) not served)'
NETBSD_UPLINK_VERDICT='rumpnet: uplink NetBSD wm0( up|:)'

# netbsd_tier TEST: succeed when the images hold NetBSD's drivers, else
# report TEST skipped.
netbsd_tier() {
  if [ ! -f "$NETBSD_TIER" ]; then
    skip "$1" "images built without RUMP_LIBDIR; see docs/rumpuser.md"
    return 1
  fi
  log "NetBSD tier of the images: $(tr '\n' ' ' < "$NETBSD_TIER")"
}

# netbsd_virtio_assignable TEST: the virtio-blk function is there as NetBSD's
# driver needs it (legacy: device id 0x1000-0x103f, revision 0, BAR0 in I/O
# space) and pciback has it; fail TEST otherwise. rumpdisk must be gone.
netbsd_virtio_assignable() {
  destroy_domain rumpdisk
  local device=/sys/bus/pci/devices/$NETBSD_VIRTIO_BLK
  [ -d "$device" ] || { fail "$1" "virtio-blk function" "no PCI function $NETBSD_VIRTIO_BLK in dom0"; return 1; }
  local vendor id revision bar0 flags driver
  vendor=$(cat "$device/vendor") id=$(cat "$device/device") revision=$(cat "$device/revision")
  bar0=$(head -1 "$device/resource")
  flags=${bar0##* }
  driver=$(readlink "$device/driver")
  log "$NETBSD_VIRTIO_BLK: $vendor:$id revision $revision, BAR0 $bar0, dom0 driver ${driver##*/}"
  # Resource flag 0x100 is IORESOURCE_IO: the BAR is in I/O space.
  if ! (( vendor == 0x1af4 && id >= 0x1000 && id <= 0x103f && revision == 0 && (flags & 0x100) )); then
    fail "$1" "virtio-blk function" "$NETBSD_VIRTIO_BLK is not a legacy virtio device with an I/O BAR0"
    return 1
  fi
  pci_assignable "$NETBSD_VIRTIO_BLK" ||
    { fail "$1" "pci-assignable-add" "xl pci-assignable-add $NETBSD_VIRTIO_BLK failed"; return 1; }
  driver=$(readlink "$device/driver")
  log "$NETBSD_VIRTIO_BLK now belongs to ${driver##*/}"
}

# netbsd_verdict DOMAIN REGEX: the domain's console line matching REGEX, or
# why there is none.
netbsd_verdict() {
  local line
  line=$(grep -a -m1 -E "$2" "$(console_log "$1")" | tr -d '\r')
  echo "${line:-$1 stopped before it said}"
}

# netbsd_attached DOMAIN UNIT: NetBSD's autoconfiguration line for UNIT
# ("ld0 at virtio0: ..."), which the configs' RUMP_VERBOSE=1 puts on the
# domain's console.
netbsd_attached() {
  local line
  line=$(grep -a -m1 -E "^$2 at " "$(console_log "$1")" | tr -d '\r')
  echo "${line:-no attach line for $2 on the console}"
}

# netbsd_domain_up TEST DOMAIN CONFIG WHAT VERDICT READY: DOMAIN from
# xl-configs/CONFIG.cfg; the rump kernel boots and its driver attaches
# WHAT (NetBSD's unit) before the domain serves it. Fails TEST unless the
# console's VERDICT line is READY and DOMAIN serves.
netbsd_domain_up() {
  local test=$1 domain=$2 config=$3 what=$4 verdict=$5 ready=$6 started
  started=$(now)
  driver_domain_create "$test" "$domain" "$config" || return 1
  if ! wait_for 300 console_settled "$domain" "$verdict"; then
    fail "$test" "NetBSD $what" "no verdict on $what within 300 s" "$domain"; diag_domain "$domain"; return 1
  fi
  if ! console_has "$domain" "$ready"; then
    fail "$test" "NetBSD $what" "$(netbsd_verdict "$domain" "$verdict")" "$domain"; return 1
  fi
  wait_for 60 console_has "$domain" "$domain: serving" ||
    { fail "$test" "$domain start" "$what ready but $domain not serving within 60 s" "$domain"; return 1; }
  log "$domain with NetBSD's $what serving $(since "$started") s after xl create: $(grep -a -m1 "$ready" "$(console_log "$domain")" | tr -d '\r')"
}

netbsd_rumpdisk_up() {
  netbsd_domain_up "$1" rumpdisk rumpdisk-netbsd ld0 "$NETBSD_DISK_VERDICT" 'rumpdisk: NetBSD ld0 ready'
}

netbsd_rumpnet_up() {
  netbsd_domain_up "$1" rumpnet rumpnet-netbsd wm0 "$NETBSD_UPLINK_VERDICT" 'rumpnet: uplink NetBSD wm0 up'
}

# Each test leaves no NetBSD domain behind, passed, failed or skipped:
# later tests expect the domains of rumpdisk.cfg and rumpnet.cfg.
test_rumpdisk_netbsd() { netbsd_disk_run "$1"; destroy_domain rumpdisk; }
test_rumpnet_netbsd() { netbsd_wire_run "$1"; rumpnet_e1000_cleanup; }

# A guest writes 8 MiB through ld0 and reads them back, detaches, and a
# fresh guest reads the same data; then dom0 writes 32 MiB more with fio,
# checking every block, and detaches.
netbsd_disk_run() {
  netbsd_virtio_assignable "$1" || return
  netbsd_tier "$1" || return
  netbsd_rumpdisk_up "$1" || return
  rumpdisk_guest_write_read "$1" nl-writer "$NETBSD_DISK" 0 gone:xvdb || return
  local wrote=$RUMPDISK_WROTE
  timeout 60 xl block-detach nl-writer xvdb ||
    { fail "$1" "block-detach" "xl block-detach failed or hung" rumpdisk nl-writer; return; }
  wait_step nl-writer 4 60 || { fail "$1" "detach seen by the guest" "$(step_line nl-writer 4)" nl-writer rumpdisk; return; }
  destroy_domain nl-writer
  start_guest nl-reader "wait:xvdb+expect:xvdb:0:8:$wrote" || { fail "$1" "xl create nl-reader" "see above"; return; }
  rumpdisk_attach nl-reader xvdb "$NETBSD_DISK" ||
    { fail "$1" "block-attach nl-reader" "xl block-attach failed" rumpdisk nl-reader; return; }
  wait_step nl-reader 2 180 || { fail "$1" "read by a fresh guest" "$(step_line nl-reader 2)" nl-reader rumpdisk; return; }
  destroy_domain nl-reader
  rumpdisk_dom0_fio "$1" "$NETBSD_DISK" --offset=16M --size=32M || return
  dump_console rumpdisk 30
  our_still_running rumpdisk || { fail "$1" "after the test" "rumpdisk is no longer running" rumpdisk; return; }
  pass "$1" "$(netbsd_attached rumpdisk "$NETBSD_DISK"); 8 MiB written through NetBSD's ld0 and read back ($wrote), detached, read again by a fresh guest; dom0's fio randwrite 4k-256k, iodepth 32, verify of 32 MiB: $RUMPDISK_FIO_RATE; detached"
}

# The exchange of rumpnet-e1000 with NetBSD's wm(4) driving the uplink NIC.
netbsd_wire_run() {
  e1000_dom0_nic "$1" || return
  netbsd_tier "$1" || return
  netbsd_rumpnet_up "$1" || return
  e1000_wire_exchange "$1" || return
  dump_console rumpnet 20
  ip -s link show "$E1000_DOM0_IF"
  our_still_running rumpnet || { fail "$1" "after the test" "rumpnet is no longer running" rumpnet; return; }
  pass "$1" "$(netbsd_attached rumpnet wm0); $E1000_EXCHANGED"
}
