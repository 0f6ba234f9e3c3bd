# The Linux reference driver domain "dd": Debian's kernel blkback and
# netback in a PV domU with driver_domain=1 and `xl devd`. These tests are
# the baseline our own driver domains are held to.

# ensure_linux_dd: create the driver domain unless it already serves.
# Sets DD_ID; DD_READY_SECONDS is the time from xl create to xl devd running.
# On failure DD_PROBLEM says why, and later tests of the boot fail at once.
DD_PROBLEM=
ensure_linux_dd() {
  if domain_exists dd && xs_exists "/local/domain/$(xl domid dd)/data/ready"; then
    DD_ID=$(xl domid dd)
    return 0
  fi
  [ -z "$DD_PROBLEM" ] || return 1
  destroy_domain dd
  # xvda: the rig's root filesystem (QEMU's 4th disk, a private snapshot);
  # xvdb: the payload (QEMU's 3rd disk), for dd-agent.sh and lib.sh.
  cat > /tmp/dd.cfg <<CFG
name = "dd"
kernel = "$GUEST_KERNEL"
ramdisk = "$GUEST_RAMDISK"
extra = "console=hvc0 root=/dev/xvda rig.payload=/dev/xvdb rig.script=dd-agent.sh rig.hostname=dd"
memory = 384
vcpus = 1
driver_domain = 1
on_crash = "preserve"
disk = [ 'format=raw,vdev=xvda,access=rw,script=/rig/phy-hotplug,target=/dev/vdd',
         'format=raw,vdev=xvdb,access=ro,script=/rig/phy-hotplug,target=/dev/vdc' ]
CFG
  rm -f "$(console_log dd)"
  local started attempt
  started=$(now)
  # libxl gives dom0's blkback 10 s to reach InitWait for dd's own disks;
  # on a loaded host that can run out once, so a second attempt is made.
  for attempt in 1 2; do
    timeout 300 xl create /tmp/dd.cfg > /tmp/dd.create.log 2>&1 && break
    cat /tmp/dd.create.log
    if [ $attempt = 2 ]; then
      DD_PROBLEM="xl create dd failed: $(grep -m1 error /tmp/dd.create.log)"
      return 1
    fi
    log "xl create dd failed; trying once more"
    destroy_domain dd
    sleep 5
    started=$(now)
  done
  DD_ID=$(xl domid dd)
  if wait_for 300 xs_exists "/local/domain/$DD_ID/data/ready"; then
    DD_READY_SECONDS=$(since "$started")
    log "driver domain dd (domid $DD_ID) serving $DD_READY_SECONDS s after xl create"
  else
    DD_PROBLEM="dd did not report xl devd running within 300 s"
    dump_console dd 60
    diag_domain dd
    return 1
  fi
}
dd_up() { # dd_up TEST: start dd or fail TEST
  ensure_linux_dd && return 0
  fail "$1" "driver domain dd" "$DD_PROBLEM"
  return 1
}
# dd_ask COMMAND: run a command of dd-agent.sh inside dd, print its answer.
# Callers use $(dd_ask ...), a subshell, so the request id cannot be a
# counter kept in a variable: it is made unique from the clock instead.
dd_ask() {
  local id reply
  id=$(date +%s%N)
  xenstore-write "/local/domain/$DD_ID/data/request" "$id $1"
  for _ in $(seq 1 120); do
    reply=$(xenstore-read "/local/domain/$DD_ID/data/reply" 2>/dev/null)
    if [ "${reply%% *}" = "$id" ]; then echo "${reply#* }"; return 0; fi
    sleep 0.5
  done
  echo "no-answer"
  return 1
}

# A guest writes through dd's blkback, reads back, and dd's RAM disk holds
# the same bytes; then a fresh guest attaches and reads them again.
test_linux_blk() {
  dd_up "$1" || return
  start_guest lblk-a "wait:xvdb+write:xvdb:0:8+info:xvdb" || { fail "$1" "xl create lblk-a" "see above"; return; }
  local attached
  attached=$(now)
  if ! timeout 120 xl block-attach lblk-a 'backend=dd,format=raw,vdev=xvdb,access=rw,target=/dev/ram0'; then
    fail "$1" "block-attach" "xl block-attach to dd failed" dd lblk-a; return
  fi
  if ! wait_step lblk-a 2 180; then
    fail "$1" "guest write+readback" "$(step_line lblk-a 2)" lblk-a dd; return
  fi
  local wrote backing
  wrote=$(step_value lblk-a 2 wrote)
  backing=$(dd_ask md5:ram0:0:8)
  if [ "$wrote" != "$backing" ]; then
    fail "$1" "backing store check" "guest wrote $wrote but dd's /dev/ram0 holds $backing" dd; return
  fi
  local io_seconds
  io_seconds=$(since "$attached")
  wait_step lblk-a 3 60; log "lblk-a: $(step_line lblk-a 3)"
  destroy_domain lblk-a
  start_guest lblk-b "wait:xvdb+expect:xvdb:0:8:$wrote" || { fail "$1" "xl create lblk-b" "see above"; return; }
  timeout 120 xl block-attach lblk-b 'backend=dd,format=raw,vdev=xvdb,access=rw,target=/dev/ram0'
  if ! wait_step lblk-b 2 180; then
    fail "$1" "re-attach read" "$(step_line lblk-b 2)" lblk-b dd; return
  fi
  pass "$1" "8 MiB written, read back and found in dd's RAM disk (attach to verified ${io_seconds} s); a fresh guest read the same data"
}

# dom0 is a frontend of dd: fio write+verify and a pattern checked inside dd.
test_linux_dom0() {
  dd_up "$1" || return
  if ! timeout 120 xl block-attach 0 'backend=dd,format=raw,vdev=xvdc,access=rw,target=/dev/ram1'; then
    fail "$1" "block-attach to dom0" "xl block-attach failed" dd; return
  fi
  if ! wait_for 60 test -b /dev/xvdc; then
    fail "$1" "dom0 blkfront" "/dev/xvdc never appeared in dom0" dd; return
  fi
  if ! fio --name=dom0-verify --filename=/dev/xvdc --direct=1 --ioengine=libaio --rw=randwrite --bs=4k \
      --iodepth=16 --size=8M --verify=crc32c --do_verify=1 > /tmp/fio-dom0.out 2>&1; then
    tail -20 /tmp/fio-dom0.out
    fail "$1" "fio verify" "fio reported errors on /dev/xvdc" dd; return
  fi
  dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
  if ! dd if=/tmp/pattern of=/dev/xvdc bs=1M seek=32 oflag=direct conv=notrunc,fsync 2>/tmp/dd.err; then
    fail "$1" "pattern write" "$(tr '\n' ' ' < /tmp/dd.err)" dd; return
  fi
  local wrote backing seen
  wrote=$(md5sum < /tmp/pattern | cut -d' ' -f1)
  seen=$(dd if=/dev/xvdc bs=1M skip=32 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
  backing=$(dd_ask md5:ram1:32:4)
  timeout 120 xl block-detach 0 xvdc
  if [ "$wrote" != "$backing" ]; then
    fail "$1" "backing store check" "dom0 wrote $wrote (reads back $seen) but dd's /dev/ram1 holds $backing" dd; return
  fi
  if ! wait_for 30 test ! -e /dev/xvdc; then
    fail "$1" "detach" "/dev/xvdc still present 30 s after block-detach" dd; return
  fi
  pass "$1" "fio randwrite+verify 8 MiB: $(grep -o 'IOPS=[^,]*' /tmp/fio-dom0.out | head -1); 4 MiB pattern found in dd; detached"
}

# Two guests on dd's bridge ping each other through dd's netback. Each first
# pings dd's own address on the bridge (step 2), so a failure says whether a
# vif reaches the bridge at all or only the forwarding between ports fails.
LNET_DD_ADDRESS=169.254.60.1
test_linux_net() {
  dd_up "$1" || return
  start_guest lnet-a "net:169.254.60.11+ping:$LNET_DD_ADDRESS+ping:169.254.60.12" 128 \
    "vif = [ 'backend=dd,bridge=ddbr0,mac=00:16:3e:60:00:11' ]" || { fail "$1" "xl create lnet-a" "see above" dd; return; }
  start_guest lnet-b "net:169.254.60.12+ping:$LNET_DD_ADDRESS+ping:169.254.60.11" 128 \
    "vif = [ 'backend=dd,bridge=ddbr0,mac=00:16:3e:60:00:12' ]" || { fail "$1" "xl create lnet-b" "see above" dd; return; }
  local guest step what
  for step in 2 3; do
    for guest in lnet-a lnet-b; do
      if ! wait_step "$guest" "$step" 300; then
        [ "$step" = 2 ] && what="ping dd's bridge address" || what="ping the other guest"
        log "dd's bridge: $(dd_ask net)"
        dd_ask logs >/dev/null  # hotplug logs, bridge ports and counters onto dd's console
        sleep 2
        fail "$1" "$guest: $what" "$(step_line "$guest" "$step")" lnet-a lnet-b
        dump_console dd 80
        return
      fi
    done
  done
  log "dd's bridge: $(dd_ask net)"
  pass "$1" "lnet-a <-> lnet-b ping through dd's netback and bridge (average round trip $(step_value lnet-b 3 rtt_ms) ms)"
}

# dom0 as a netfront of dd (the reference for rumpnet-dom0): a vif from dd's
# bridge in dom0, pinging a guest on the same bridge.
test_linux_net_dom0() {
  dd_up "$1" || return
  local mac=00:16:3e:60:00:01 interface
  start_guest lnet-c "net:169.254.60.13+ping:169.254.60.2" 128 \
    "vif = [ 'backend=dd,bridge=ddbr0,mac=00:16:3e:60:00:13' ]" || { fail "$1" "xl create lnet-c" "see above" dd; return; }
  timeout 120 xl network-attach 0 backend=dd bridge=ddbr0 "mac=$mac" ||
    { fail "$1" "network-attach to dom0" "xl network-attach failed" dd; return; }
  interface=$(interface_with_mac "$mac" 60) ||
    { fail "$1" "dom0 netfront" "no interface with MAC $mac appeared in dom0" dd; return; }
  ip link set "$interface" up
  ip addr add 169.254.60.2/24 dev "$interface"
  wait_step lnet-c 2 300 || { fail "$1" "guest pings dom0" "$(step_line lnet-c 2)" lnet-c dd; return; }
  local handle
  handle=$(xl network-list 0 | awk -v m="$mac" '$3 == m {print $1}')
  timeout 60 xl network-detach 0 "$handle" || { fail "$1" "network-detach from dom0" "xl network-detach 0 $handle failed" dd; return; }
  pass "$1" "dom0 $interface (netfront) <-> lnet-c through dd's netback and bridge; detached"
}
