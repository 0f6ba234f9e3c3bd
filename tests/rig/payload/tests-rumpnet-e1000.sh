# rumpnet with a NIC passed through as its switch's uplink: QEMU's e1000 at
# 00:10.0 (xtask's rig) shares an emulated wire, a QEMU hub, with a second
# e1000 at 00:12.0 that dom0 drives with Linux's own e1000 driver. A guest
# behind rumpnet reaches dom0 over that wire. The wire carries
# 169.254.71.0/24 and never leaves the emulated machine.

E1000_UPLINK=0000:00:10.0
# The MAC xtask gives dom0's NIC at 00:12.0.
E1000_DOM0_MAC=52:54:00:00:71:12
E1000_DOM0_ADDRESS=169.254.71.1
E1000_GUEST_ADDRESS=169.254.71.11

# e1000_dom0_setup: pciback takes the uplink NIC and Linux's e1000 the
# other, which dom0 brings up as E1000_DOM0_ADDRESS (interface in
# E1000_DOM0_IF). On failure E1000_WHY says why. The NIC must not belong
# to a running domain.
e1000_dom0_setup() {
  E1000_WHY=
  pci_assignable "$E1000_UPLINK" || { E1000_WHY="xl pci-assignable-add $E1000_UPLINK failed"; return 1; }
  modprobe e1000 || { E1000_WHY="modprobe e1000 failed in dom0"; return 1; }
  E1000_DOM0_IF=$(interface_with_mac "$E1000_DOM0_MAC" 30) ||
    { E1000_WHY="no interface with MAC $E1000_DOM0_MAC in dom0"; return 1; }
  ip link set "$E1000_DOM0_IF" up
  ip addr flush dev "$E1000_DOM0_IF"
  ip addr add "$E1000_DOM0_ADDRESS/24" dev "$E1000_DOM0_IF"
  log "dom0's e1000 is $E1000_DOM0_IF ($E1000_DOM0_ADDRESS); $E1000_UPLINK belongs to pciback"
}

# e1000_dom0_nic TEST: e1000_dom0_setup with rumpnet gone; fail TEST otherwise.
e1000_dom0_nic() {
  destroy_domain rumpnet
  e1000_dom0_setup || { fail "$1" "dom0 NIC" "$E1000_WHY"; return 1; }
}

# rumpnet_e1000_up TEST [WORDS]: (re)create rumpnet from rumpnet-e1000.cfg,
# with WORDS added to its command line, and wait until it serves with the
# e1000 as its uplink; fail TEST otherwise.
rumpnet_e1000_up() {
  local started
  started=$(now)
  driver_domain_create "$1" rumpnet rumpnet-e1000 "${2:-}" || return 1
  if ! wait_for 120 console_has rumpnet 'rumpnet: serving, watching'; then
    fail "$1" "rumpnet start" "not serving within 120 s" rumpnet; diag_domain rumpnet; return 1
  fi
  if ! console_has rumpnet "rumpnet: uplink $E1000_UPLINK: e1000 "; then
    fail "$1" "uplink bring-up" "$(grep -a -m1 'uplink' "$(console_log rumpnet)" | tr -d '\r')" rumpnet; return 1
  fi
  log "rumpnet with its uplink serving $(since "$started") s after xl create: $(grep -a -m1 "uplink $E1000_UPLINK" "$(console_log rumpnet)" | tr -d '\r')"
}

# The e1000 rumpnet is not the one later tests expect: it goes, passed or
# failed, and so do the guest and dom0's iperf3 server.
test_rumpnet_e1000() { rumpnet_e1000_run "$1"; rumpnet_e1000_cleanup; }
# The same with the NIC polled every millisecond instead of interrupting.
test_rumpnet_e1000_polled() { rumpnet_e1000_run "$1" pci-interrupts=none; rumpnet_e1000_cleanup; }

rumpnet_e1000_cleanup() {
  grep -E 'CPU|e1000|pciback|pcifront|xen-pirq' /proc/interrupts
  local function
  for function in 0000:00:10.0 0000:00:12.0; do
    log "$function: irq $(cat /sys/bus/pci/devices/$function/irq 2>/dev/null)"
  done
  destroy_domain rn-e
  destroy_domain rumpnet
  pkill -x iperf3 2>/dev/null
  true
}

# e1000_wire_exchange TEST: with rumpnet serving and its uplink on the wire,
# a guest behind rumpnet (rn-e) pings dom0 across the wire and runs iperf3
# against it, and dom0 pings the guest back. Afterwards E1000_EXCHANGED
# says what was measured; fails TEST otherwise.
e1000_wire_exchange() {
  iperf3 -s -D || { fail "$1" "iperf3 server in dom0" "iperf3 -s -D failed" rumpnet; return 1; }
  start_tools_guest rn-e "net:$E1000_GUEST_ADDRESS+ping:$E1000_DOM0_ADDRESS+iperf:$E1000_DOM0_ADDRESS:5" 160 \
    "$(rumpnet_vif 00:16:3e:71:00:11)" || { fail "$1" "xl create rn-e" "see above" rumpnet; return 1; }
  wait_step rn-e 2 300 || { fail "$1" "guest pings dom0" "$(step_line rn-e 2)" rn-e rumpnet; return 1; }
  ping -c 5 -W 3 "$E1000_GUEST_ADDRESS" > /tmp/ping-e1000.out 2>&1 ||
    { cat /tmp/ping-e1000.out; fail "$1" "dom0 pings guest" "no answer from $E1000_GUEST_ADDRESS" rn-e rumpnet; return 1; }
  cat /tmp/ping-e1000.out
  wait_step rn-e 3 180 || { fail "$1" "iperf3" "$(step_line rn-e 3)" rn-e rumpnet; return 1; }
  E1000_EXCHANGED="guest <-> dom0 over the e1000 wire: ping (rtt $(step_value rn-e 2 rtt_ms) ms; from dom0 $(grep -o 'rtt min/avg/max/mdev = [^ ]*' /tmp/ping-e1000.out | cut -d' ' -f4) ms), iperf3 $(step_value rn-e 3 bits_per_second) bit/s"
}

# rumpnet_e1000_run TEST [WORDS]: a guest behind rumpnet pings dom0 across
# the wire and runs iperf3 against it; dom0 pings the guest back; rumpnet
# counts the frames on its uplink.
rumpnet_e1000_run() {
  e1000_dom0_nic "$1" || return
  rumpnet_e1000_up "$1" "${2:-}" || return
  e1000_wire_exchange "$1" || return
  # The counters are logged when they move, at most once a second.
  wait_for 15 console_has rumpnet 'uplink: link up, rx [1-9][0-9]* frames' ||
    { fail "$1" "uplink counters" "no uplink line with frames received on rumpnet's console" rumpnet; return; }
  dump_console rumpnet 20
  ip -s link show "$E1000_DOM0_IF"
  our_still_running rumpnet || { fail "$1" "after the test" "rumpnet is no longer running" rumpnet; return; }
  pass "$1" "$E1000_EXCHANGED; $(grep -a 'uplink: link up, rx' "$(console_log rumpnet)" | tail -1 | sed 's/.*uplink: //' | tr -d '\r')"
}
