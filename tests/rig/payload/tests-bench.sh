# Measurements for `cargo xtask bench`: the same workloads against the
# Linux driver domain dd and against our domains (when their images exist).
# Lines "RIG-BENCH backend=B metric=M value=V" are collected by xtask; this
# test passes when the Linux baseline was measured completely (RAM disk,
# network, NVMe and the e1000 uplink).

# BENCH_KEY_PREFIX goes before every metric name: "nvme_" while the disk
# under test is the NVMe controller instead of a RAM disk.
BENCH_KEY_PREFIX=
bench_emit() {
  echo "RIG-BENCH backend=$1 metric=$BENCH_KEY_PREFIX$2 value=$3"
  if [ "$1" = linux-dd ] && [ -n "$3" ]; then echo "$BENCH_KEY_PREFIX$2" >> /tmp/bench-metrics; fi
}

# bench_fio_results BACKEND GUEST: turn the guest's DOMU-BENCH lines into
# RIG-BENCH lines (IOPS for 4k, MiB/s for 1 MiB).
bench_fio_results() {
  local line name
  grep -a '^DOMU-BENCH ' "$(console_log "$2")" | tr -d '\r' | while read -r _ name line; do
    echo "  $2: $name $line"
    case "$name $line" in
      "randread "*error=0*) bench_emit "$1" randread_4k_qd32_iops "$(echo "$line" | grep -o 'read_iops=[0-9.]*' | cut -d= -f2)" ;;
      "randwrite "*error=0*) bench_emit "$1" randwrite_4k_qd32_iops "$(echo "$line" | grep -o 'write_iops=[0-9.]*' | cut -d= -f2)" ;;
      "seqread "*error=0*) bench_emit "$1" seqread_1m_mib_s "$(echo "$line" | grep -o 'read_kib_s=[0-9]*' | cut -d= -f2 | awk '{printf "%.1f", $1 / 1024}')" ;;
      "seqwrite "*error=0*) bench_emit "$1" seqwrite_1m_verify_mib_s "$(echo "$line" | grep -o 'write_kib_s=[0-9]*' | cut -d= -f2 | awk '{printf "%.1f", $1 / 1024}')" ;;
      "seqverify ok"*) bench_emit "$1" sequential_data_verified 1 ;;
      "seqverify "*) bench_emit "$1" sequential_data_verified 0 ;;
    esac
  done
}

# bench_disk BACKEND CREATE ATTACH_SPEC: time from creating the driver domain
# to a frontend being Connected, then the fio workloads in a guest.
# CREATE is a command that creates and waits for the backend domain; the
# guest is booted first and waits for xvdb, so the measured interval is the
# backend's own start-up plus the handshake.
bench_disk() {
  local backend=$1 create=$2 spec=$3 domain=$4
  start_tools_guest bench-disk "wait:xvdb:900+bench:xvdb" 256 || return 1
  wait_for 120 console_has bench-disk DOMU-UP
  destroy_domain "$domain"
  local started frontend_id state_path
  started=$(now)
  $create || { log "bench: $backend did not start"; return 1; }
  bench_emit "$backend" create_to_ready_s "$(since "$started")"
  frontend_id=$(xl domid bench-disk)
  timeout 90 xl block-attach bench-disk "$spec" || return 1
  state_path=$(backend_vbd_path "$domain" "$frontend_id" xvdb)/state
  if wait_for 120 xs_equals "$state_path" 4; then
    bench_emit "$backend" create_to_connected_s "$(since "$started")"
  fi
  bench_emit "$backend" memory_mib "$(xl list "$domain" | awk 'NR == 2 {print $3}')"
  wait_step bench-disk 2 900
  bench_fio_results "$backend" bench-disk
  bench_memory_used "$backend" "$domain"
  destroy_domain bench-disk
}

# bench_memory_used BACKEND DOMAIN: memory in use in the driver domain after
# the workload, RAM disks included. Linux: MemTotal - MemAvailable; ours:
# the memory given less the heap still free, as last logged on its console.
bench_memory_used() {
  local used= free_kib given
  case $1 in
    linux-dd) used=$(dd_ask memused) ;;
    *)
      free_kib=$(grep -ao '[0-9]* KiB heap free' "$(console_log "$2")" | tail -1 | cut -d' ' -f1)
      given=$(xl list "$2" | awk 'NR == 2 {print $3}')
      [ -n "$free_kib" ] && [ -n "$given" ] && used=$(awk -v g="$given" -v f="$free_kib" 'BEGIN {printf "%.1f", g - f / 1024}') ;;
  esac
  case $used in ''|*[!0-9.]*) log "bench: no memory figure for $1 ($used)" ;; *) bench_emit "$1" memory_used_mib "$used" ;; esac
}

# bench_net BACKEND CREATE DOMAIN KEY=VALUE...: the driver domain's start-up
# up to its first vif Connected, then ping and iperf3 TCP between two guests
# through it. As in bench_disk, the first guest is up before the driver
# domain is created and gets its vif by xl network-attach, so the interval
# is the backend's start-up plus the handshake.
bench_net() {
  local backend=$1 create=$2 domain=$3
  shift 3
  local words="$*" spec
  spec=$(echo "$words" | tr ' ' ',')
  start_tools_guest bench-server "net:169.254.80.11+iperfd" 192 || return 1
  wait_for 120 console_has bench-server DOMU-UP
  destroy_domain "$domain"
  local started state_path
  started=$(now)
  $create || { log "bench: $backend did not start"; return 1; }
  bench_emit "$backend" net_create_to_ready_s "$(since "$started")"
  # shellcheck disable=SC2086 # one key=value per argument
  timeout 90 xl network-attach bench-server $words mac=00:16:3e:80:00:11 || { log "bench: network-attach to $backend failed"; return 1; }
  state_path=/local/domain/$(xl domid "$domain")/backend/vif/$(xl domid bench-server)/0/state
  if wait_for 120 xs_equals "$state_path" 4; then
    bench_emit "$backend" create_to_vif_connected_s "$(since "$started")"
  fi
  bench_emit "$backend" memory_mib "$(xl list "$domain" | awk 'NR == 2 {print $3}')"
  start_tools_guest bench-client "net:169.254.80.12+ping:169.254.80.11+iperf:169.254.80.11:10" 192 \
    "vif = [ '$spec,mac=00:16:3e:80:00:12' ]" || return 1
  if wait_step bench-client 2 300; then
    bench_emit "$backend" ping_rtt_ms "$(step_value bench-client 2 rtt_ms)"
  fi
  if wait_step bench-client 3 300; then
    bench_emit "$backend" iperf3_tcp_mbit_s "$(step_value bench-client 3 bits_per_second | awk '{printf "%.1f", $1 / 1000000}')"
  else
    log "bench: iperf3 through $backend failed: $(step_line bench-client 3)"
    dump_console bench-client 20
  fi
  destroy_domain bench-client
  destroy_domain bench-server
}

# The NVMe phase: the rig's NVMe controller (NVME_ADDRESS, see
# tests-rumpdisk-nvme.sh) passed through to each driver domain in turn, with
# the same guest workloads as the RAM disks. The controller belongs to one
# domain at a time: dd has it first, and when dd is destroyed it returns to
# pciback for rumpdisk. Both serve namespace 1 whole (64 MiB).

bench_nvme_assignable() {
  modprobe xen-pciback 2>/dev/null
  xl pci-assignable-list | grep -q "$NVME_ADDRESS" && return 0
  xl pci-assignable-add "$NVME_ADDRESS" || { log "bench: xl pci-assignable-add $NVME_ADDRESS failed"; return 1; }
}

# start_linux_dd_with ADDRESS NODE WHAT: dd as the Linux baseline boots it
# (ensure_linux_dd's /tmp/dd.cfg) plus the PCI function at ADDRESS;
# dd-agent.sh loads its driver and names what it made of it in data/NODE
# before data/ready ("missing: ..." when it could not).
start_linux_dd_with() {
  local address=$1 node=$2 what=$3 answer
  destroy_domain dd
  [ -f /tmp/dd.cfg ] || { log "bench: no /tmp/dd.cfg (the Linux baseline did not start dd)"; return 1; }
  { grep -v '^pci[[:space:]]*=' /tmp/dd.cfg; echo "pci = [ '$address' ]"; } > "/tmp/dd-$node.cfg"
  rm -f "$(console_log dd)"
  if ! timeout 300 xl create "/tmp/dd-$node.cfg" > "/tmp/dd-$node.create.log" 2>&1; then
    cat "/tmp/dd-$node.create.log"; return 1
  fi
  DD_ID=$(xl domid dd)
  if ! wait_for 300 xs_exists "/local/domain/$DD_ID/data/ready"; then
    log "bench: dd with the $what did not report ready within 300 s"; dump_console dd 60; return 1
  fi
  answer=$(xenstore-read "/local/domain/$DD_ID/data/$node" 2>/dev/null)
  case $answer in ''|missing*) log "bench: dd has no $what: $answer"; dump_console dd 40; return 1 ;; esac
  log "bench: $(grep -a -m1 "dd: $what" "$(console_log dd)" | tr -d '\r')"
}

start_linux_dd_nvme() { bench_nvme_assignable && start_linux_dd_with "$NVME_ADDRESS" nvme NVMe; }

# start_rumpdisk_nvme: rumpdisk from xl-configs/rumpdisk-nvme.cfg, ready
# once nvme0 is up and the domain serves.
start_rumpdisk_nvme() {
  destroy_domain rumpdisk
  bench_nvme_assignable || return 1
  sed -E 's|^[[:space:]]*kernel[[:space:]]*=.*|kernel = "/rig/domains/rumpdisk"|' \
    /rig/xl-configs/rumpdisk-nvme.cfg > /tmp/bench-rumpdisk-nvme.cfg
  rm -f "$(console_log rumpdisk)"
  if ! xl create /tmp/bench-rumpdisk-nvme.cfg > /tmp/bench-rumpdisk-nvme.create.log 2>&1; then
    cat /tmp/bench-rumpdisk-nvme.create.log; return 1
  fi
  if ! wait_for 180 console_has rumpdisk 'rumpdisk: serving, watching'; then
    log "bench: rumpdisk with nvme0 not serving within 180 s"; dump_console rumpdisk 40; return 1
  fi
  console_has rumpdisk 'NVMe disk nvme0 ready' || { log "bench: rumpdisk serves without nvme0"; dump_console rumpdisk 40; return 1; }
}

bench_nvme() {
  BENCH_KEY_PREFIX=nvme_
  # After each workload, how the controller was driven (interrupts, DMA).
  if bench_disk linux-dd start_linux_dd_nvme 'backend=dd,format=raw,vdev=xvdb,access=rw,target=/dev/nvme0n1' dd; then
    log "bench: dd's NVMe after the workload: $(dd_ask nvme)"
  fi
  destroy_domain dd
  if [ -f /rig/domains/rumpdisk ] &&
    bench_disk rumpdisk start_rumpdisk_nvme 'backend=rumpdisk,format=raw,vdev=xvdb,access=rw,target=nvme0' rumpdisk; then
    log "bench: rumpdisk's NVMe after the workload: $(grep -a 'nvme0' "$(console_log rumpdisk)" | tail -3 | tr -d '\r' | tr '\n' ' ')"
  fi
  # Later tests of the boot expect the RAM-disk rumpdisk of rumpdisk.cfg,
  # which ensure_our_domain starts afresh once this one is gone.
  destroy_domain rumpdisk
  BENCH_KEY_PREFIX=
}

# The uplink phase: QEMU's e1000 at 00:10.0 (E1000_UPLINK, see
# tests-rumpnet-e1000.sh) passed through to each driver domain in turn as
# the NIC its guests reach the wire by; dom0 drives the e1000 at the other
# end of the wire (00:12.0) and runs the iperf3 server. dd bridges the NIC
# into ddbr0 with its vifs; rumpnet makes it its switch's uplink port.

# dd puts the NIC on bridge ddbr0 with its vifs.
start_linux_dd_uplink() { start_linux_dd_with "$E1000_UPLINK" uplink e1000; }

# start_rumpnet_uplink: rumpnet from xl-configs/rumpnet-e1000.cfg, ready
# once it serves with the e1000 as its uplink.
start_rumpnet_uplink() {
  destroy_domain rumpnet
  sed -E 's|^[[:space:]]*kernel[[:space:]]*=.*|kernel = "/rig/domains/rumpnet"|' \
    /rig/xl-configs/rumpnet-e1000.cfg > /tmp/bench-rumpnet-e1000.cfg
  rm -f "$(console_log rumpnet)"
  if ! xl create /tmp/bench-rumpnet-e1000.cfg > /tmp/bench-rumpnet-e1000.create.log 2>&1; then
    cat /tmp/bench-rumpnet-e1000.create.log; return 1
  fi
  if ! wait_for 120 console_has rumpnet 'rumpnet: serving, watching'; then
    log "bench: rumpnet with its uplink not serving within 120 s"; dump_console rumpnet 40; return 1
  fi
  console_has rumpnet "rumpnet: uplink $E1000_UPLINK: e1000 " ||
    { log "bench: rumpnet serves without its uplink"; dump_console rumpnet 40; return 1; }
}

# bench_uplink BACKEND CREATE DOMAIN KEY=VALUE...: the driver domain's
# start-up with the NIC, then ping and iperf3 TCP from a guest behind it to
# dom0 across the wire.
bench_uplink() {
  local backend=$1 create=$2 domain=$3
  shift 3
  local spec started
  spec=$(echo "$*" | tr ' ' ',')
  destroy_domain "$domain"
  started=$(now)
  $create || { log "bench: $backend did not start with the e1000"; return 1; }
  bench_emit "$backend" net_create_to_ready_s "$(since "$started")"
  start_tools_guest bench-uplink "net:169.254.71.12+ping:$E1000_DOM0_ADDRESS+iperf:$E1000_DOM0_ADDRESS:10" 192 \
    "vif = [ '$spec,mac=00:16:3e:71:00:12' ]" || return 1
  if wait_step bench-uplink 2 300; then
    bench_emit "$backend" ping_rtt_ms "$(step_value bench-uplink 2 rtt_ms)"
  fi
  if wait_step bench-uplink 3 300; then
    bench_emit "$backend" iperf3_tcp_mbit_s "$(step_value bench-uplink 3 bits_per_second | awk '{printf "%.1f", $1 / 1000000}')"
  else
    log "bench: iperf3 across $backend's e1000 failed: $(step_line bench-uplink 3)"
    dump_console bench-uplink 20
  fi
  destroy_domain bench-uplink
}

bench_e1000() {
  BENCH_KEY_PREFIX=uplink_
  destroy_domain rumpnet
  destroy_domain dd
  if e1000_dom0_setup && iperf3 -s -D; then
    bench_uplink linux-dd start_linux_dd_uplink dd backend=dd bridge=ddbr0
    destroy_domain dd
    if [ -f /rig/domains/rumpnet ]; then
      bench_uplink rumpnet start_rumpnet_uplink rumpnet backend=rumpnet
      log "bench: rumpnet's uplink after the workload: $(grep -a 'uplink: link' "$(console_log rumpnet)" | tail -1 | tr -d '\r')"
    fi
    # Later tests expect the rumpnet of rumpnet.cfg.
    destroy_domain rumpnet
    pkill -x iperf3
  else
    log "bench: no e1000 wire: ${E1000_WHY:-iperf3 -s -D failed in dom0}"
  fi
  BENCH_KEY_PREFIX=
}

start_rumpdisk() { OUR_FAILED_rumpdisk=; ensure_our_domain rumpdisk || { log "bench: $OUR_PROBLEM"; return 1; }; }
start_rumpnet() { OUR_FAILED_rumpnet=; ensure_our_domain rumpnet || { log "bench: $OUR_PROBLEM"; return 1; }; }

test_bench() {
  bench_disk linux-dd ensure_linux_dd 'backend=dd,format=raw,vdev=xvdb,access=rw,target=/dev/ram0' dd
  bench_net linux-dd ensure_linux_dd dd backend=dd bridge=ddbr0
  destroy_domain dd
  if [ -f /rig/domains/rumpdisk ]; then
    bench_disk rumpdisk start_rumpdisk 'backend=rumpdisk,format=raw,vdev=xvdb,access=rw,target=ram0' rumpdisk
    destroy_domain rumpdisk
  else
    log "bench: rumpdisk image not built"
  fi
  if [ -f /rig/domains/rumpnet ]; then
    bench_net rumpnet start_rumpnet rumpnet backend=rumpnet
    destroy_domain rumpnet
  else
    log "bench: rumpnet image not built"
  fi
  bench_nvme
  bench_e1000
  # The verdict: the Linux baseline is complete.
  local missing= metric
  for metric in randread_4k_qd32_iops randwrite_4k_qd32_iops seqread_1m_mib_s seqwrite_1m_verify_mib_s create_to_connected_s iperf3_tcp_mbit_s ping_rtt_ms create_to_vif_connected_s \
      nvme_randread_4k_qd32_iops nvme_randwrite_4k_qd32_iops nvme_seqread_1m_mib_s nvme_seqwrite_1m_verify_mib_s nvme_create_to_connected_s \
      uplink_iperf3_tcp_mbit_s uplink_ping_rtt_ms; do
    grep -q "^$metric$" /tmp/bench-metrics 2>/dev/null || missing="$missing $metric"
  done
  if [ -n "$missing" ]; then fail "$1" "baseline" "Linux driver domain metrics missing:$missing"
  else pass "$1" "Linux baseline measured; see the RIG-BENCH lines"; fi
}
