# rumpdisk: our block driver domain. It exports RAM disks named on its
# command line (xl-configs/rumpdisk.cfg: disk=ram0:64M disk=ram1:16M);
# frontends pick one with target=<name>.

rumpdisk_up() { # rumpdisk_up TEST: start rumpdisk or fail TEST
  ensure_our_domain rumpdisk && return 0
  fail "$1" "rumpdisk start" "$OUR_PROBLEM"
  return 1
}
rumpdisk_attach() { # rumpdisk_attach DOMAIN VDEV TARGET
  timeout 90 xl block-attach "$1" "backend=rumpdisk,format=raw,vdev=$2,access=rw,target=$3"
}
# rumpdisk_leftovers BACKEND_PATH: after a failed detach, what is left of the
# backend directory (libxl waits for the backend domain to remove it).
rumpdisk_leftovers() {
  echo "----- $1 after the detach -----"
  xenstore-ls -f "$1" 2>&1 | head -20
  echo "----- end of $1 -----"
}
# rumpdisk_guest_write_read TEST GUEST TARGET OFFSET [STEPS]: a fresh GUEST
# gets rumpdisk's TARGET as xvdb, writes 8 MiB at OFFSET MiB and reads them
# back (its steps 2 and 3; STEPS, '+'-separated, come after). Afterwards
# RUMPDISK_WROTE is the md5 of what it wrote; fails TEST otherwise.
rumpdisk_guest_write_read() {
  local test=$1 guest=$2 target=$3 offset=$4 read
  start_guest "$guest" "wait:xvdb+write:xvdb:$offset:8+read:xvdb:$offset:8${5:++$5}" ||
    { fail "$test" "xl create $guest" "see above"; return 1; }
  rumpdisk_attach "$guest" xvdb "$target" ||
    { fail "$test" "block-attach $guest" "xl block-attach failed" rumpdisk "$guest"; return 1; }
  wait_step "$guest" 2 180 || { fail "$test" "$guest write" "$(step_line "$guest" 2)" "$guest" rumpdisk; return 1; }
  wait_step "$guest" 3 60 || { fail "$test" "$guest read back" "$(step_line "$guest" 3)" "$guest" rumpdisk; return 1; }
  RUMPDISK_WROTE=$(step_value "$guest" 2 wrote)
  read=$(step_value "$guest" 3 md5)
  [ "$read" = "$RUMPDISK_WROTE" ] ||
    { fail "$test" "$guest read back" "wrote $RUMPDISK_WROTE, read $read" "$guest" rumpdisk; return 1; }
}
# rumpdisk_dom0_fio TEST TARGET FIO_OPTIONS...: dom0 attaches rumpdisk's
# TARGET as xvdd, runs fio random writes of 4 KiB to 256 KiB, 32 in flight,
# checking every block (FIO_OPTIONS say where and how much), and detaches.
# Afterwards RUMPDISK_FIO_RATE is fio's IOPS and bandwidth; fails TEST
# otherwise.
rumpdisk_dom0_fio() {
  local test=$1 target=$2; shift 2
  rumpdisk_attach 0 xvdd "$target" || { fail "$test" "block-attach to dom0" "xl block-attach failed" rumpdisk; return 1; }
  wait_for 60 test -b /dev/xvdd || { fail "$test" "dom0 blkfront" "/dev/xvdd never appeared in dom0" rumpdisk; return 1; }
  if ! fio --name="$target-verify" --filename=/dev/xvdd --direct=1 --ioengine=libaio --rw=randwrite \
      --bsrange=4k-256k --iodepth=32 --verify=crc32c --do_verify=1 "$@" > "/tmp/fio-$target.out" 2>&1; then
    tail -20 "/tmp/fio-$target.out"
    fail "$test" "fio verify" "fio reported errors on /dev/xvdd ($target)" rumpdisk; return 1
  fi
  RUMPDISK_FIO_RATE=$(grep -o 'IOPS=[^,]*, BW=[^ ]*' "/tmp/fio-$target.out" | head -1)
  timeout 60 xl block-detach 0 xvdd ||
    { fail "$test" "block-detach" "xl block-detach failed or hung" rumpdisk; return 1; }
  wait_for 30 test ! -e /dev/xvdd || { fail "$test" "detach" "/dev/xvdd still present in dom0" rumpdisk; return 1; }
}
rumpdisk_end_check() { # rumpdisk_end_check TEST DETAIL: pass unless rumpdisk died
  if our_still_running rumpdisk; then pass "$1" "$2"
  else fail "$1" "after the test" "rumpdisk is no longer running" rumpdisk; diag_domain rumpdisk; fi
}

test_rumpdisk_boot() {
  rumpdisk_up "$1" || return
  pass "$1" "ready ${OUR_READY_SECONDS:-earlier} s after xl create; memory $(xl list rumpdisk | awk 'NR == 2 {print $3}') MiB"
}

# Write, read back, detach, attach again to the same guest, read again.
test_rumpdisk_rw() {
  rumpdisk_up "$1" || return
  start_guest rd-rw "wait:xvdb+write:xvdb:0:8+gone:xvdb+wait:xvdb+read:xvdb:0:8" || { fail "$1" "xl create rd-rw" "see above"; return; }
  rumpdisk_attach rd-rw xvdb ram0 || { fail "$1" "block-attach" "xl block-attach failed" rumpdisk rd-rw; return; }
  wait_step rd-rw 2 180 || { fail "$1" "guest write+readback" "$(step_line rd-rw 2)" rd-rw rumpdisk; return; }
  local wrote frontend_id backend
  wrote=$(step_value rd-rw 2 wrote)
  frontend_id=$(xl domid rd-rw)
  backend=$(backend_vbd_path rumpdisk "$frontend_id" xvdb)
  timeout 60 xl block-detach rd-rw xvdb ||
    { fail "$1" "block-detach" "xl block-detach failed or hung" rumpdisk rd-rw; rumpdisk_leftovers "$backend"; return; }
  wait_step rd-rw 3 60 || { fail "$1" "detach seen by the guest" "$(step_line rd-rw 3)" rd-rw rumpdisk; return; }
  if xenstore-read "$backend/state" >/dev/null 2>&1 && ! xs_equals "$backend/state" 6; then
    fail "$1" "backend after detach" "$backend/state is $(xenstore-read "$backend/state"), not 6 (Closed)" rumpdisk; return
  fi
  rumpdisk_attach rd-rw xvdb ram0 || { fail "$1" "second block-attach" "xl block-attach failed" rumpdisk rd-rw; return; }
  wait_step rd-rw 5 180 || { fail "$1" "read after re-attach" "$(step_line rd-rw 5)" rd-rw rumpdisk; return; }
  local again
  again=$(step_value rd-rw 5 md5)
  [ "$again" = "$wrote" ] || { fail "$1" "data after re-attach" "wrote $wrote, read $again" rd-rw rumpdisk; return; }
  rumpdisk_end_check "$1" "8 MiB written and read back ($wrote); detach reached the guest; re-attach read the same data"
}

# A fresh guest reads what a destroyed guest wrote: the data lives in rumpdisk.
test_rumpdisk_reattach() {
  rumpdisk_up "$1" || return
  start_guest rd-writer "wait:xvdb+write:xvdb:16:8" || { fail "$1" "xl create rd-writer" "see above"; return; }
  rumpdisk_attach rd-writer xvdb ram0 || { fail "$1" "block-attach" "xl block-attach failed" rumpdisk rd-writer; return; }
  wait_step rd-writer 2 180 || { fail "$1" "write" "$(step_line rd-writer 2)" rd-writer rumpdisk; return; }
  local wrote
  wrote=$(step_value rd-writer 2 wrote)
  # No detach first: the backend must cope with a frontend that vanishes.
  destroy_domain rd-writer
  start_guest rd-reader "wait:xvdb+expect:xvdb:16:8:$wrote" || { fail "$1" "xl create rd-reader" "see above"; return; }
  rumpdisk_attach rd-reader xvdb ram0 || { fail "$1" "block-attach (reader)" "xl block-attach failed" rumpdisk rd-reader; return; }
  wait_step rd-reader 2 180 || { fail "$1" "read by a fresh guest" "$(step_line rd-reader 2)" rd-reader rumpdisk; return; }
  rumpdisk_end_check "$1" "a fresh guest read the 8 MiB a destroyed guest had written ($wrote)"
}

# dom0 as a frontend of rumpdisk, with fio checking every block it wrote.
test_rumpdisk_dom0() {
  rumpdisk_up "$1" || return
  rumpdisk_attach 0 xvdc ram1 || { fail "$1" "block-attach to dom0" "xl block-attach failed" rumpdisk; return; }
  if ! wait_for 60 test -b /dev/xvdc; then
    fail "$1" "dom0 blkfront" "/dev/xvdc never appeared in dom0" rumpdisk; return
  fi
  if ! fio --name=dom0-verify --filename=/dev/xvdc --direct=1 --ioengine=libaio --rw=randwrite --bs=4k \
      --iodepth=16 --size=12M --verify=crc32c --do_verify=1 > /tmp/fio-rumpdisk.out 2>&1; then
    tail -20 /tmp/fio-rumpdisk.out
    fail "$1" "fio verify" "fio reported errors on /dev/xvdc" rumpdisk; return
  fi
  timeout 60 xl block-detach 0 xvdc ||
    { fail "$1" "block-detach" "xl block-detach failed or hung" rumpdisk; rumpdisk_leftovers "$(backend_vbd_path rumpdisk 0 xvdc)"; return; }
  wait_for 30 test ! -e /dev/xvdc || { fail "$1" "detach" "/dev/xvdc still present in dom0" rumpdisk; return; }
  rumpdisk_end_check "$1" "fio randwrite+verify of 12 MiB on ram1: $(grep -o 'IOPS=[^,]*' /tmp/fio-rumpdisk.out | head -1); detached"
}

# Two frontends connected at the same time, on different disks.
test_rumpdisk_two() {
  rumpdisk_up "$1" || return
  start_guest rd-one "wait:xvdb+write:xvdb:32:8+read:xvdb:32:8" || { fail "$1" "xl create rd-one" "see above"; return; }
  start_guest rd-two "wait:xvdb+write:xvdb:0:8+read:xvdb:0:8" || { fail "$1" "xl create rd-two" "see above"; return; }
  rumpdisk_attach rd-one xvdb ram0 || { fail "$1" "block-attach rd-one" "xl block-attach failed" rumpdisk; return; }
  rumpdisk_attach rd-two xvdb ram1 || { fail "$1" "block-attach rd-two" "xl block-attach failed" rumpdisk; return; }
  local guest
  for guest in rd-one rd-two; do
    wait_step "$guest" 2 180 || { fail "$1" "$guest write" "$(step_line "$guest" 2)" "$guest" rumpdisk; return; }
    wait_step "$guest" 3 60 || { fail "$1" "$guest read" "$(step_line "$guest" 3)" "$guest" rumpdisk; return; }
    [ "$(step_value "$guest" 3 md5)" = "$(step_value "$guest" 2 wrote)" ] ||
      { fail "$1" "$guest data" "read $(step_value "$guest" 3 md5), wrote $(step_value "$guest" 2 wrote)" "$guest" rumpdisk; return; }
  done
  rumpdisk_end_check "$1" "rd-one on ram0 and rd-two on ram1 connected together, each read back its own data"
}

# An unknown target: a clear error, and rumpdisk goes on serving.
test_rumpdisk_bad_target() {
  rumpdisk_up "$1" || return
  start_guest rd-bad "wait:xvdb+read:xvdb:0:1" || { fail "$1" "xl create rd-bad" "see above"; return; }
  local frontend_id backend rumpdisk_id output rc
  frontend_id=$(xl domid rd-bad)
  rumpdisk_id=$(xl domid rumpdisk)
  backend=$(backend_vbd_path rumpdisk "$frontend_id" xvdc)
  output=$(rumpdisk_attach rd-bad xvdc no-such-disk 2>&1); rc=$?
  echo "$output"
  # Evidence the backend refused: a failed attach or a backend that closed,
  # and a reason: the xenbus error node or a console line naming the target.
  local closed=no reason=
  wait_for 30 sh -c "[ \$(xenstore-read $backend/state 2>/dev/null || echo 6) -ge 5 ]" && closed=yes
  reason=$(xenstore-ls -f "/local/domain/$rumpdisk_id/error" 2>/dev/null | grep -i -m1 'no-such-disk\|target\|disk')
  [ -n "$reason" ] || reason=$(grep -a -m1 'no-such-disk' "$(console_log rumpdisk)" | tr -d '\r')
  log "bad target: xl rc=$rc, backend closed=$closed, reason: ${reason:-none}"
  if [ $rc = 0 ] && [ $closed = no ]; then
    fail "$1" "refusal" "attach of target=no-such-disk succeeded and the backend stayed open" rumpdisk; return
  fi
  if [ -z "$reason" ]; then
    fail "$1" "error message" "no xenstore error node and no console line names the bad target" rumpdisk; return
  fi
  timeout 30 xl block-detach rd-bad xvdc >/dev/null 2>&1
  our_still_running rumpdisk || { fail "$1" "survival" "rumpdisk died after the bad request" rumpdisk; return; }
  rumpdisk_attach rd-bad xvdb ram0 || { fail "$1" "good attach afterwards" "xl block-attach failed" rumpdisk rd-bad; return; }
  wait_step rd-bad 2 180 || { fail "$1" "read afterwards" "$(step_line rd-bad 2)" rd-bad rumpdisk; return; }
  rumpdisk_end_check "$1" "refused (xl rc=$rc, backend closed=$closed): $reason; a good attach then worked"
}

# What Linux blkfront negotiated with rumpdisk (2 vCPUs so it may use 2 queues).
test_rumpdisk_features() {
  rumpdisk_up "$1" || return
  start_guest rd-feat "wait:xvdb+info:xvdb" 128 "" 2 || { fail "$1" "xl create rd-feat" "see above"; return; }
  rumpdisk_attach rd-feat xvdb ram0 || { fail "$1" "block-attach" "xl block-attach failed" rumpdisk rd-feat; return; }
  wait_step rd-feat 2 180 || { fail "$1" "info" "$(step_line rd-feat 2)" rd-feat rumpdisk; return; }
  local persistent indirect queues frontend missing=
  persistent=$(step_value rd-feat 2 persistent)
  indirect=$(step_value rd-feat 2 indirect)
  queues=$(step_value rd-feat 2 queues)
  frontend=/local/domain/$(xl domid rd-feat)/device/vbd/$(vbd_id xvdb)
  [ "$persistent" = enabled ] || missing="$missing persistent-grants($persistent)"
  [ "$indirect" = enabled ] || missing="$missing indirect-segments($indirect)"
  [ "${queues:-0}" -ge 2 ] || missing="$missing multi-queue(queues=$queues)"
  log "frontend nodes: persistent=$(xenstore-read "$frontend/feature-persistent" 2>/dev/null) queues=$(xenstore-read "$frontend/multi-queue-num-queues" 2>/dev/null)"
  if [ -n "$missing" ]; then
    fail "$1" "negotiation" "not negotiated:$missing ($(step_line rd-feat 2))" rd-feat rumpdisk; return
  fi
  rumpdisk_end_check "$1" "persistent grants, indirect segments (max_segments $(step_value rd-feat 2 max_segments)), $queues queues"
}
