# rumpdisk serving an NVMe controller passed through to it: QEMU's nvme at
# 00:11.0 (xtask's rig), xl-configs/rumpdisk-nvme.cfg.

NVME_ADDRESS=0000:00:11.0
# rumpdisk's verdict on the controller, once bring-up is over.
NVME_VERDICT_REGEX='NVMe disk nvme0 (ready|\(.*\) not served)'

# nvme_assignable TEST: hand the controller to pciback (it must not belong
# to a running domain for that); fail TEST otherwise.
nvme_assignable() {
  destroy_domain rumpdisk
  pci_assignable "$NVME_ADDRESS" && return 0
  fail "$1" "pci-assignable-add" "xl pci-assignable-add $NVME_ADDRESS failed"
  return 1
}

# nvme_rumpdisk_up TEST [WORDS]: (re)create rumpdisk from rumpdisk-nvme.cfg,
# with WORDS added to its command line, and wait until it serves with nvme0
# ready; fail TEST otherwise.
nvme_rumpdisk_up() {
  local started
  started=$(now)
  driver_domain_create "$1" rumpdisk rumpdisk-nvme "${2:-}" || return 1
  # The NVMe disk is brought up before rumpdisk starts serving; its
  # verdict comes first (a "serving nothing" warning may come earlier still).
  if ! wait_for 180 console_has rumpdisk "$NVME_VERDICT_REGEX"; then
    fail "$1" "NVMe bring-up" "no verdict on nvme0 within 180 s" rumpdisk; diag_domain rumpdisk; return 1
  fi
  if ! console_has rumpdisk 'NVMe disk nvme0 ready'; then
    fail "$1" "NVMe bring-up" "$(grep -a -m1 -E 'ERROR' "$(console_log rumpdisk)" | tr -d '\r')" rumpdisk
    return 1
  fi
  if ! wait_for 60 console_has rumpdisk 'rumpdisk: serving, watching'; then
    fail "$1" "rumpdisk start" "nvme0 ready but rumpdisk not serving within 60 s" rumpdisk; return 1
  fi
  log "rumpdisk with nvme0 serving $(since "$started") s after xl create: $(grep -a -m1 'NVMe disk nvme0 ready' "$(console_log rumpdisk)" | tr -d '\r')"
}

# Each test leaves no NVMe rumpdisk behind, passed or failed: later tests
# expect the RAM-disk rumpdisk of rumpdisk.cfg.
test_rumpdisk_nvme() { nvme_write_restart_read "$1"; destroy_domain rumpdisk; }
test_rumpdisk_nvme_dom0() { nvme_dom0_fio "$1"; destroy_domain rumpdisk; }
test_rumpdisk_nvme_modes() { nvme_other_modes "$1"; destroy_domain rumpdisk; }

# A guest writes through rumpdisk's NVMe disk and reads back; rumpdisk is
# destroyed and recreated (the controller is reset and brought up again),
# and a fresh guest reads the same data.
nvme_write_restart_read() {
  nvme_assignable "$1" || return
  nvme_rumpdisk_up "$1" || return
  rumpdisk_guest_write_read "$1" rn-writer nvme0 0 || return
  local wrote=$RUMPDISK_WROTE
  destroy_domain rn-writer
  dump_console rumpdisk 40
  local id
  id=$(xl domid rumpdisk)
  log "pcifront before the destroy: frontend state $(xenstore-read /local/domain/$id/device/pci/0/state 2>&1), backend state $(xenstore-read /local/domain/0/backend/pci/$id/0/state 2>&1)"
  # The data must live on the controller, not in rumpdisk.
  xl destroy rumpdisk
  wait_for 30 sh -c '! xl domid rumpdisk >/dev/null 2>&1' || { fail "$1" "xl destroy rumpdisk" "still there"; return; }
  nvme_rumpdisk_up "$1" || return
  start_guest rn-reader "wait:xvdb+expect:xvdb:0:8:$wrote" || { fail "$1" "xl create rn-reader" "see above"; return; }
  rumpdisk_attach rn-reader xvdb nvme0 || { fail "$1" "block-attach after restart" "xl block-attach failed" rumpdisk rn-reader; return; }
  wait_step rn-reader 2 180 || { fail "$1" "read after restart" "$(step_line rn-reader 2)" rn-reader rumpdisk; return; }
  destroy_domain rn-reader
  dump_console rumpdisk 40
  our_still_running rumpdisk || { fail "$1" "after the test" "rumpdisk is no longer running" rumpdisk; return; }
  pass "$1" "8 MiB written through nvme0 and read back ($wrote); after xl destroy and a new rumpdisk, a fresh guest read the same data"
}

# dom0 as a frontend of rumpdisk's NVMe disk, with fio checking every block
# it wrote: many requests in flight, of sizes up to what blkfront sends, so
# the PRP lists, the DMA regions and the interrupt path all work under load.
nvme_dom0_fio() {
  nvme_assignable "$1" || return
  nvme_rumpdisk_up "$1" || return
  rumpdisk_dom0_fio "$1" nvme0 --size=32M || return
  our_still_running rumpdisk || { fail "$1" "after the test" "rumpdisk is no longer running" rumpdisk; return; }
  # xl shutdown: the controller is shut down normally (its cache written back) before poweroff.
  timeout 90 xl shutdown -w rumpdisk >/dev/null 2>&1 || { fail "$1" "xl shutdown rumpdisk" "did not finish in 90 s" rumpdisk; return; }
  dump_console rumpdisk 20
  console_has rumpdisk "nvme0: NVMe controller shut down" ||
    { fail "$1" "controller shutdown" "no 'NVMe controller shut down' on rumpdisk's console"; return; }
  pass "$1" "fio randwrite 4k-256k, iodepth 32, verify of 32 MiB on nvme0: $RUMPDISK_FIO_RATE; detached; xl shutdown shut the controller down"
}

# The other ways of taking the controller's completions: the legacy INTx
# line instead of MSI-X (QEMU's controller has no MSI capability), and no
# interrupt at all (the platform then wakes rumpdisk every millisecond to
# poll). In each, a fresh guest writes and reads back 8 MiB; with INTx,
# rumpdisk must also report interrupts taken.
nvme_other_modes() {
  nvme_assignable "$1" || return
  local mode expected offset guest done=
  for mode in intx none; do
    case $mode in
      intx) expected='interrupts by Intx' offset=16 ;;
      none) expected='no interrupt; polling it' offset=32 ;;
    esac
    nvme_rumpdisk_up "$1" "pci-interrupts=$mode" || return
    console_has rumpdisk "$expected" ||
      { fail "$1" "interrupt mode $mode" "no console line matching '$expected'" rumpdisk; return; }
    guest=rn-$mode
    rumpdisk_guest_write_read "$1" "$guest" nvme0 "$offset" || return
    destroy_domain "$guest"
    dump_console rumpdisk 12
    if [ $mode = intx ]; then
      # Bring-up's admin commands take a few; 8 MiB of I/O takes dozens more
      # (reported at most every 10 s).
      wait_for 25 console_has rumpdisk 'nvme0: [1-9][0-9]+ interrupts taken' ||
        { fail "$1" "INTx delivery" "rumpdisk reported fewer than 10 interrupts taken" rumpdisk; return; }
      done="$done intx: $(grep -a -o 'nvme0: [0-9]* interrupts taken' "$(console_log rumpdisk)" | tail -1),"
    fi
    done="$done $mode: 8 MiB read back ($RUMPDISK_WROTE);"
  done
  pass "$1" "${done# }"
}
