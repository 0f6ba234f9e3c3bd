# Measurements for `cargo xtask bench`: the same workloads against the
# Linux driver domain dd and against our domains (when their images exist).
# Lines "RIG-BENCH backend=B metric=M value=V" are collected by xtask; this
# test passes when the Linux baseline was measured completely (RAM disk,
# network, NVMe, the e1000 uplink and, when the images hold NetBSD's
# drivers, the virtio-blk function).

# BENCH_KEY_PREFIX goes before every metric name: "nvme_" or "virtio_" while
# the disk under test is a PCI function passed through instead of a RAM
# disk, "uplink_" while guests reach dom0 across the e1000 wire.
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
  bench_ping_iperf "$backend" bench-client
  destroy_domain bench-server
}

# bench_ping_iperf BACKEND GUEST: the round trip of GUEST's ping (step 2)
# and the rate of its iperf3 (step 3) as BACKEND's; then GUEST goes.
bench_ping_iperf() {
  if wait_step "$2" 2 300; then
    bench_emit "$1" ping_rtt_ms "$(step_value "$2" 2 rtt_ms)"
  fi
  if wait_step "$2" 3 300; then
    bench_emit "$1" iperf3_tcp_mbit_s "$(step_value "$2" 3 bits_per_second | awk '{printf "%.1f", $1 / 1000000}')"
  else
    log "bench: iperf3 through $1 failed: $(step_line "$2" 3)"
    dump_console "$2" 20
  fi
  destroy_domain "$2"
}

# The passed-through disks: a PCI function of the rig given to each driver
# domain in turn, with the same guest workloads as the RAM disks. The
# function belongs to one domain at a time: dd has it first, and when dd is
# destroyed it returns to pciback for rumpdisk. Both serve the whole disk
# (64 MiB). The NVMe controller (NVME_ADDRESS, see tests-rumpdisk-nvme.sh)
# is driven by Linux's nvme and by rumpdisk's own driver; the legacy
# virtio-blk function (NETBSD_VIRTIO_BLK, see tests-netbsd.sh), when the
# images hold NetBSD's drivers, by Linux's virtio_blk and by NetBSD's
# ld@virtio in rumpdisk.

# bench_assignable ADDRESS: pciback has the PCI function at ADDRESS.
bench_assignable() {
  pci_assignable "$1" || { log "bench: xl pci-assignable-add $1 failed"; return 1; }
}

# start_linux_dd_with ADDRESS NODE WHAT: dd as the Linux baseline boots it
# (ensure_linux_dd's /tmp/dd.cfg) plus the PCI function at ADDRESS;
# dd-agent.sh loads its driver and names what it made of it in data/NODE
# before data/ready ("missing: ..." when it could not).
start_linux_dd_with() {
  local address=$1 node=$2 what=$3 answer
  destroy_domain dd
  bench_assignable "$address" || return 1
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

start_linux_dd_nvme() { start_linux_dd_with "$NVME_ADDRESS" nvme NVMe; }
start_linux_dd_virtio() { start_linux_dd_with "$NETBSD_VIRTIO_BLK" virtio virtio-blk; }
# dd puts the NIC on bridge ddbr0 with its vifs.
start_linux_dd_uplink() { start_linux_dd_with "$E1000_UPLINK" uplink e1000; }

# start_ours_from NAME CONFIG SECONDS READY: our driver domain NAME from
# xl-configs/CONFIG.cfg, after pciback has the functions of its pci= line;
# ready once it serves (within SECONDS) and its console has said READY (a
# grep -E pattern) about the device it was given.
start_ours_from() {
  local name=$1 config=/rig/xl-configs/$2.cfg seconds=$3 ready=$4 address
  destroy_domain "$name"
  while read -r address; do
    bench_assignable "$address" || return 1
  done < <(grep -E '^[[:space:]]*pci[[:space:]]*=' "$config" | grep -oE '[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]')
  sed -E "s|^[[:space:]]*kernel[[:space:]]*=.*|kernel = \"/rig/domains/$name\"|" "$config" > "/tmp/bench-$2.cfg"
  rm -f "$(console_log "$name")"
  if ! xl create "/tmp/bench-$2.cfg" > "/tmp/bench-$2.create.log" 2>&1; then
    cat "/tmp/bench-$2.create.log"; return 1
  fi
  if ! wait_for "$seconds" console_settled "$name" "$name: serving, watching" ||
    ! console_has "$name" "$name: serving, watching"; then
    log "bench: $name from $2.cfg not serving within $seconds s"; dump_console "$name" 40; return 1
  fi
  console_has "$name" "$ready" || { log "bench: $name from $2.cfg serves without its device"; dump_console "$name" 40; return 1; }
}

start_rumpdisk_nvme() { start_ours_from rumpdisk rumpdisk-nvme 180 'rumpdisk: NVMe disk nvme0 ready'; }
# The rump kernel boots before rumpdisk serves; pcifront may take a while.
start_rumpdisk_netbsd() { start_ours_from rumpdisk rumpdisk-netbsd 300 'rumpdisk: NetBSD ld0 ready'; }

# bench_passthrough_disk PREFIX NODE DD_DISK OURS OUR_START OUR_DISK: the
# disk workloads, metric names prefixed with PREFIX, on dd given the PCI
# function by start_linux_dd_NODE (its Linux driver makes /dev/DD_DISK of
# it), then on rumpdisk started by OUR_START, serving OUR_DISK, measured as
# backend OURS. After each workload, how the device was driven.
bench_passthrough_disk() {
  local node=$2 dd_disk=$3 ours=$4 our_start=$5 our_disk=$6
  BENCH_KEY_PREFIX=$1
  if bench_disk linux-dd "start_linux_dd_$node" "backend=dd,format=raw,vdev=xvdb,access=rw,target=/dev/$dd_disk" dd; then
    log "bench: dd's $dd_disk after the workload: $(dd_ask "pci:$node")"
  fi
  destroy_domain dd
  if [ -f /rig/domains/rumpdisk ] &&
    bench_disk "$ours" "$our_start" "backend=rumpdisk,format=raw,vdev=xvdb,access=rw,target=$our_disk" rumpdisk; then
    log "bench: $ours's $our_disk after the workload: $(grep -a "$our_disk" "$(console_log rumpdisk)" | tail -3 | tr -d '\r' | tr '\n' ' ')"
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
# into ddbr0 with its vifs; rumpnet makes it its switch's uplink port,
# driven by rumpnet's own e1000 driver and, when the images hold NetBSD's
# drivers, by NetBSD's wm(4) (backend rumpnet-netbsd). The Linux column of
# both is dd's one measurement.

start_rumpnet_uplink() { start_ours_from rumpnet rumpnet-e1000 120 "rumpnet: uplink $E1000_UPLINK: e1000 "; }
start_rumpnet_netbsd() { start_ours_from rumpnet rumpnet-netbsd 300 'rumpnet: uplink NetBSD wm0 up'; }

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
  bench_ping_iperf "$backend" bench-uplink
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
      if [ -f "$NETBSD_TIER" ]; then
        bench_uplink rumpnet-netbsd start_rumpnet_netbsd rumpnet backend=rumpnet
      fi
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
  # What the verdict needs of the Linux baseline.
  local disk_metrics=(randread_4k_qd32_iops randwrite_4k_qd32_iops seqread_1m_mib_s seqwrite_1m_verify_mib_s create_to_connected_s)
  local required=("${disk_metrics[@]}" iperf3_tcp_mbit_s ping_rtt_ms create_to_vif_connected_s uplink_iperf3_tcp_mbit_s uplink_ping_rtt_ms)
  required+=("${disk_metrics[@]/#/nvme_}")
  bench_passthrough_disk nvme_ nvme nvme0n1 rumpdisk start_rumpdisk_nvme nvme0
  # The NetBSD phases: the virtio-blk function here, wm(4) in bench_e1000.
  if [ -f "$NETBSD_TIER" ]; then
    log "bench: NetBSD's drivers in the images: $(tr '\n' ' ' < "$NETBSD_TIER")"
    bench_passthrough_disk virtio_ virtio vda rumpdisk-netbsd start_rumpdisk_netbsd "$NETBSD_DISK"
    required+=("${disk_metrics[@]/#/virtio_}")
  else
    log "bench: NetBSD phases (virtio-blk by ld@virtio, the e1000 by wm(4)) skipped: the images hold no NetBSD driver (built without RUMP_LIBDIR; see docs/rumpuser.md)"
  fi
  bench_e1000
  # The verdict: the Linux baseline is complete.
  local missing= metric
  for metric in "${required[@]}"; do
    grep -q "^$metric$" /tmp/bench-metrics 2>/dev/null || missing="$missing $metric"
  done
  if [ -n "$missing" ]; then fail "$1" "baseline" "Linux driver domain metrics missing:$missing"
  else pass "$1" "Linux baseline measured; see the RIG-BENCH lines"; fi
}
