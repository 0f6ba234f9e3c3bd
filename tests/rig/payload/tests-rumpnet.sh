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

# rumpnet_attach DOMAIN MAC: xl network-attach to rumpnet by name, as users
# type it (one key=value per argument: xl does not split on commas here).
# On failure RUMPNET_WHY has the first error of xl's verbose output.
rumpnet_attach() {
  timeout 90 xl -vvv network-attach "$1" backend=rumpnet "mac=$2" > /tmp/rumpnet-attach.log 2>&1 && return 0
  grep -v 'debug:' /tmp/rumpnet-attach.log | tail -20
  RUMPNET_WHY="xl network-attach failed: $(grep -m1 'error' /tmp/rumpnet-attach.log)"
  return 1
}

# rumpnet_dom0_vif MAC: attach a vif with MAC to dom0, bring its interface
# up as 169.254.70.1/24 and set RUMPNET_DOM0_IF; fails with RUMPNET_WHY.
rumpnet_dom0_vif() {
  local mac=$1
  RUMPNET_DOM0_IF=
  rumpnet_attach 0 "$mac" || return 1
  RUMPNET_DOM0_IF=$(interface_with_mac "$mac" 60) ||
    { RUMPNET_WHY="no interface with MAC $mac appeared in dom0"; return 1; }
  ip link set "$RUMPNET_DOM0_IF" up
  ip addr add 169.254.70.1/24 dev "$RUMPNET_DOM0_IF"
}
rumpnet_dom0_handle() { xl network-list 0 | awk -v m="$1" '$3 == m {print $1}'; }
rumpnet_counted() { rumpnet_counted_above "$1" 0; }
rumpnet_counted_above() { [ "$(xenstore-read "$1" 2>/dev/null || echo 0)" -gt "$2" ] 2>/dev/null; }

# dom0 gets a vif from rumpnet (xen-netfront in dom0) and pings a guest;
# the guest's counters show up in xenstore. Then dom0 plays a lying
# frontend by hand (its netfront unloaded): rings it never granted.
# rumpnet must refuse that vif with a reason, and a good vif attached
# afterwards must reach the guest again.
test_rumpnet_dom0() {
  rumpnet_up "$1" || return
  local mac=00:16:3e:70:00:01 bad_mac=00:16:3e:70:00:02
  start_guest rn-c "net:169.254.70.13+ping:169.254.70.1" 128 "$(rumpnet_vif 00:16:3e:70:00:13)" ||
    { fail "$1" "xl create rn-c" "see above" rumpnet; return; }
  rumpnet_dom0_vif $mac || { fail "$1" "dom0 vif" "$RUMPNET_WHY" rumpnet; return; }
  local interface=$RUMPNET_DOM0_IF
  wait_step rn-c 2 300 || { fail "$1" "guest pings dom0" "$(step_line rn-c 2)" rn-c rumpnet; return; }
  ping -c 3 -W 3 169.254.70.13 > /tmp/ping-rumpnet.out 2>&1 ||
    { cat /tmp/ping-rumpnet.out; fail "$1" "dom0 pings guest" "no answer from 169.254.70.13" rn-c rumpnet; return; }

  local rumpnet_id statistics name counters=
  rumpnet_id=$(xl domid rumpnet)
  statistics=/local/domain/$rumpnet_id/backend/vif/$(xl domid rn-c)/0/statistics
  # Refreshed every second; the pings above must have been counted.
  for name in tx-packets tx-bytes rx-packets rx-bytes; do
    wait_for 15 rumpnet_counted "$statistics/$name" ||
      { xenstore-ls -f "$statistics"; fail "$1" "statistics" "$statistics/$name is not above 0" rn-c rumpnet; return; }
    counters="$counters $name=$(xenstore-read "$statistics/$name")"
  done
  for name in rx-drops errors; do
    xs_exists "$statistics/$name" || { fail "$1" "statistics" "$statistics/$name is missing" rumpnet; return; }
  done
  log "rn-c's vif counters:$counters"

  timeout 60 xl network-detach 0 "$(rumpnet_dom0_handle $mac)" || { fail "$1" "network-detach" "xl network-detach failed" rumpnet; return; }

  # The lying frontend.
  # The detached interface goes away asynchronously; until then the module is in use.
  wait_for 30 rmmod xen-netfront 2>/dev/null ||
    { fail "$1" "unload dom0 netfront" "rmmod xen-netfront: $(rmmod xen-netfront 2>&1)" rumpnet; return; }
  rumpnet_attach 0 "$bad_mac" ||
    { modprobe xen-netfront; fail "$1" "hostile network-attach" "$RUMPNET_WHY" rumpnet; return; }
  local handle frontend backend reason state
  handle=$(rumpnet_dom0_handle $bad_mac)
  frontend=/local/domain/0/device/vif/$handle
  backend=/local/domain/$rumpnet_id/backend/vif/0/$handle
  xenstore-write "$frontend/tx-ring-ref" 4000 "$frontend/rx-ring-ref" 4001 "$frontend/event-channel" 7 \
    "$frontend/request-rx-copy" 1 "$frontend/feature-rx-notify" 1
  xenstore-write "$frontend/state" 4
  wait_for 30 xs_equals "$backend/state" 6; state=$(xenstore-read "$backend/state" 2>/dev/null)
  reason=$(xenstore-read "$backend/error" 2>/dev/null)
  log "hostile vif 0/$handle: backend state ${state:-gone}, error: ${reason:-none}"
  timeout 60 xl network-detach 0 "$handle" >/dev/null 2>&1 || xl network-detach -f 0 "$handle" >/dev/null 2>&1
  modprobe xen-netfront
  [ "$state" = 6 ] || { fail "$1" "hostile frontend refused" "$backend/state is ${state:-gone}, not 6 (Closed)" rumpnet; return; }
  [ -n "$reason" ] || { fail "$1" "hostile frontend reason" "no $backend/error node" rumpnet; return; }
  our_still_running rumpnet || { fail "$1" "survival" "rumpnet died after the hostile frontend" rumpnet; diag_domain rumpnet; return; }

  rumpnet_dom0_vif $mac || { fail "$1" "dom0 vif again" "$RUMPNET_WHY" rumpnet; return; }
  # The interface exists before the vif is connected: give the handshake time.
  wait_for 30 ping -c 1 -W 2 169.254.70.13 > /tmp/ping-rumpnet.out 2>&1 ||
    { cat /tmp/ping-rumpnet.out; fail "$1" "dom0 pings guest again" "no answer from 169.254.70.13 for 30 s" rn-c rumpnet; return; }
  timeout 60 xl network-detach 0 "$(rumpnet_dom0_handle $mac)" || { fail "$1" "second network-detach" "xl network-detach failed" rumpnet; return; }
  rumpnet_end_check "$1" "dom0 $interface <-> rn-c ping both ways; counters$counters; lying frontend refused ($reason); dom0 reached rn-c again; detached"
}

# A guest's vif is detached and attached again; the guest pings a peer after.
# Meanwhile another pair (rn-t2 -> rn-t1) runs iperf3 through the switch: its
# traffic must go on across the detach and the iperf3 run must complete.
test_rumpnet_reattach() {
  rumpnet_up "$1" || return
  start_tools_guest rn-t1 "net:169.254.70.18+iperfd" 160 "$(rumpnet_vif 00:16:3e:70:00:18)" ||
    { fail "$1" "xl create rn-t1" "see above" rumpnet; return; }
  start_tools_guest rn-t2 "net:169.254.70.19+ping:169.254.70.18+iperf:169.254.70.18:60" 160 \
    "$(rumpnet_vif 00:16:3e:70:00:19)" || { fail "$1" "xl create rn-t2" "see above" rumpnet; return; }
  start_guest rn-peer "net:169.254.70.15" 128 "$(rumpnet_vif 00:16:3e:70:00:15)" ||
    { fail "$1" "xl create rn-peer" "see above" rumpnet; return; }
  start_guest rn-d "net:169.254.70.14+ping:169.254.70.15+netgone+net:169.254.70.14+ping:169.254.70.15" 128 \
    "$(rumpnet_vif 00:16:3e:70:00:14)" || { fail "$1" "xl create rn-d" "see above" rumpnet; return; }
  wait_step rn-d 2 300 || { fail "$1" "first ping" "$(step_line rn-d 2)" rn-d rn-peer rumpnet; return; }
  wait_step rn-t2 2 300 || { fail "$1" "rn-t2 ping" "$(step_line rn-t2 2)" rn-t2 rn-t1 rumpnet; return; }
  local talking before after
  talking=/local/domain/$(xl domid rumpnet)/backend/vif/$(xl domid rn-t2)/0/statistics/tx-packets
  wait_for 15 rumpnet_counted "$talking"
  before=$(xenstore-read "$talking" 2>/dev/null || echo 0)
  timeout 60 xl network-detach rn-d 0 || { fail "$1" "network-detach" "xl network-detach failed" rn-d rumpnet; return; }
  wait_step rn-d 3 60 || { fail "$1" "detach seen by the guest" "$(step_line rn-d 3)" rn-d rumpnet; return; }
  local iperf_running=yes
  step_done rn-t2 3 && iperf_running=no
  [ $iperf_running = yes ] && wait_for 15 rumpnet_counted_above "$talking" "$before"
  after=$(xenstore-read "$talking" 2>/dev/null || echo 0)
  log "rn-t2 sent $before packets before rn-d's detach, $after after it; iperf3 still running: $iperf_running"
  if [ $iperf_running = yes ] && [ "$after" -le "$before" ]; then
    fail "$1" "bystanders during detach" "rn-t2's tx-packets stayed at $before while iperf3 ran" rn-t2 rn-t1 rumpnet; return
  fi
  rumpnet_attach rn-d 00:16:3e:70:00:14 || { fail "$1" "network-attach" "$RUMPNET_WHY" rn-d rumpnet; return; }
  wait_step rn-d 5 300 || { fail "$1" "ping after re-attach" "$(step_line rn-d 5)" rn-d rn-peer rumpnet; return; }
  wait_step rn-t2 3 180 || { fail "$1" "bystanders' iperf3" "$(step_line rn-t2 3)" rn-t2 rn-t1 rumpnet; return; }
  rumpnet_end_check "$1" "vif detached (guest saw eth0 go), attached again, ping works again; rn-t2 -> rn-t1 iperf3 across it: $(step_value rn-t2 3 bits_per_second) bit/s, $before -> $after packets during the detach"
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
