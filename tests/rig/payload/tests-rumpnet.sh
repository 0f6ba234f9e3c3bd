# rumpnet: our network driver domain, a learning switch between the vifs
# it serves (vif = [ 'backend=rumpnet,mac=...' ]; no bridge= needed).
# Guests use 169.254.70.0/24, which never leaves the emulated machine.

rumpnet_up() {
  ensure_our_domain rumpnet && return 0
  fail "$1" "rumpnet start" "$OUR_PROBLEM"
  return 1
}
rumpnet_vif() { echo "vif = [ 'backend=rumpnet,mac=$1' ]"; }
rumpnet_end_check() {
  if our_still_running rumpnet; then pass "$1" "$2"
  else fail "$1" "after the test" "rumpnet is no longer running" rumpnet; diag_domain rumpnet; fi
}

test_rumpnet_boot() {
  rumpnet_up "$1" || return
  pass "$1" "ready ${OUR_READY_SECONDS:-earlier} s after xl create; memory $(xl list rumpnet | awk 'NR == 2 {print $3}') MiB"
}

test_rumpnet_ping() {
  rumpnet_up "$1" || return
  start_tools_guest rn-a "net:169.254.70.11+iperfd+ping:169.254.70.12" 160 "$(rumpnet_vif 00:16:3e:70:00:11)" ||
    { fail "$1" "xl create rn-a" "see above" rumpnet; return; }
  start_tools_guest rn-b "net:169.254.70.12+ping:169.254.70.11+iperf:169.254.70.11:5" 160 "$(rumpnet_vif 00:16:3e:70:00:12)" ||
    { fail "$1" "xl create rn-b" "see above" rumpnet; return; }
  wait_step rn-a 3 300 || { fail "$1" "rn-a ping" "$(step_line rn-a 3)" rn-a rn-b rumpnet; return; }
  wait_step rn-b 2 300 || { fail "$1" "rn-b ping" "$(step_line rn-b 2)" rn-b rn-a rumpnet; return; }
  wait_step rn-b 3 120 || { fail "$1" "iperf3" "$(step_line rn-b 3)" rn-b rn-a rumpnet; return; }
  rumpnet_end_check "$1" "ping both ways (rtt $(step_value rn-b 2 rtt_ms) ms); iperf3 $(step_value rn-b 3 bits_per_second) bit/s"
}

# dom0 gets a vif from rumpnet (xen-netfront in dom0) and pings a guest.
test_rumpnet_dom0() {
  rumpnet_up "$1" || return
  local mac=00:16:3e:70:00:01 interface= device
  start_guest rn-c "net:169.254.70.13+ping:169.254.70.1" 128 "$(rumpnet_vif 00:16:3e:70:00:13)" ||
    { fail "$1" "xl create rn-c" "see above" rumpnet; return; }
  timeout 90 xl network-attach 0 "backend=rumpnet,mac=$mac" || { fail "$1" "network-attach to dom0" "xl network-attach failed" rumpnet; return; }
  for _ in $(seq 1 120); do
    for device in /sys/class/net/*; do
      [ "$(cat "$device/address" 2>/dev/null)" = "$mac" ] && interface=$(basename "$device")
    done
    [ -n "$interface" ] && break
    sleep 0.5
  done
  [ -n "$interface" ] || { fail "$1" "dom0 netfront" "no interface with MAC $mac appeared in dom0" rumpnet; return; }
  ip link set "$interface" up
  ip addr add 169.254.70.1/24 dev "$interface"
  wait_step rn-c 2 300 || { fail "$1" "guest pings dom0" "$(step_line rn-c 2)" rn-c rumpnet; return; }
  ping -c 3 -W 3 169.254.70.13 > /tmp/ping-rumpnet.out 2>&1 ||
    { cat /tmp/ping-rumpnet.out; fail "$1" "dom0 pings guest" "no answer from 169.254.70.13" rn-c rumpnet; return; }
  local handle
  handle=$(xl network-list 0 | awk -v m="$mac" '$3 == m {print $1}')
  timeout 60 xl network-detach 0 "${handle:-$mac}" || { fail "$1" "network-detach" "xl network-detach failed" rumpnet; return; }
  rumpnet_end_check "$1" "dom0 $interface <-> rn-c ping both ways; dom0's vif detached"
}

# A guest's vif is detached and attached again; the guest pings a peer after.
test_rumpnet_reattach() {
  rumpnet_up "$1" || return
  start_guest rn-peer "net:169.254.70.15" 128 "$(rumpnet_vif 00:16:3e:70:00:15)" ||
    { fail "$1" "xl create rn-peer" "see above" rumpnet; return; }
  start_guest rn-d "net:169.254.70.14+ping:169.254.70.15+netgone+net:169.254.70.14+ping:169.254.70.15" 128 \
    "$(rumpnet_vif 00:16:3e:70:00:14)" || { fail "$1" "xl create rn-d" "see above" rumpnet; return; }
  wait_step rn-d 2 300 || { fail "$1" "first ping" "$(step_line rn-d 2)" rn-d rn-peer rumpnet; return; }
  timeout 60 xl network-detach rn-d 0 || { fail "$1" "network-detach" "xl network-detach failed" rn-d rumpnet; return; }
  wait_step rn-d 3 60 || { fail "$1" "detach seen by the guest" "$(step_line rn-d 3)" rn-d rumpnet; return; }
  timeout 90 xl network-attach rn-d "backend=rumpnet,mac=00:16:3e:70:00:14" ||
    { fail "$1" "network-attach" "xl network-attach failed" rn-d rumpnet; return; }
  wait_step rn-d 5 300 || { fail "$1" "ping after re-attach" "$(step_line rn-d 5)" rn-d rn-peer rumpnet; return; }
  rumpnet_end_check "$1" "vif detached (guest saw eth0 go), attached again, ping works again"
}

# A guest is destroyed and created again with the same MAC: the switch must
# forget the old port and reach the new one.
test_rumpnet_restart() {
  rumpnet_up "$1" || return
  start_guest rn-peer "net:169.254.70.17" 128 "$(rumpnet_vif 00:16:3e:70:00:17)" ||
    { fail "$1" "xl create rn-peer" "see above" rumpnet; return; }
  local round
  for round in 1 2; do
    start_guest rn-e "net:169.254.70.16+ping:169.254.70.17" 128 "$(rumpnet_vif 00:16:3e:70:00:16)" ||
      { fail "$1" "xl create rn-e (round $round)" "see above" rumpnet; return; }
    wait_step rn-e 2 300 || { fail "$1" "ping (round $round)" "$(step_line rn-e 2)" rn-e rn-peer rumpnet; return; }
    destroy_domain rn-e
  done
  rumpnet_end_check "$1" "guest destroyed and recreated with the same MAC; ping works both times"
}
