# rumpdisk serving an NVMe controller passed through to it: QEMU's nvme at
# 00:11.0 (xtask's rig), xl-configs/rumpdisk-nvme.cfg.

NVME_ADDRESS=0000:00:11.0

# nvme_rumpdisk_up TEST: (re)create rumpdisk from rumpdisk-nvme.cfg and wait
# until it serves with nvme0 ready; fail TEST otherwise.
nvme_rumpdisk_up() {
  destroy_domain rumpdisk
  sed -E -e 's|^[[:space:]]*kernel[[:space:]]*=.*|kernel = "/rig/domains/rumpdisk"|' \
    /rig/xl-configs/rumpdisk-nvme.cfg > /tmp/rumpdisk-nvme.cfg
  rm -f "$(console_log rumpdisk)"
  local started
  started=$(now)
  if ! xl create /tmp/rumpdisk-nvme.cfg > /tmp/rumpdisk-nvme.create.log 2>&1; then
    cat /tmp/rumpdisk-nvme.create.log
    fail "$1" "xl create rumpdisk-nvme.cfg" "$(tail -2 /tmp/rumpdisk-nvme.create.log | tr '\n' ' ')"; return 1
  fi
  if ! wait_for 180 console_has rumpdisk "$OUR_READY_REGEX"; then
    fail "$1" "rumpdisk start" "no serving line within 180 s" rumpdisk; diag_domain rumpdisk; return 1
  fi
  if ! console_has rumpdisk 'NVMe disk nvme0 ready'; then
    fail "$1" "NVMe bring-up" "$(grep -a -m1 -E 'ERROR' "$(console_log rumpdisk)" | tr -d '\r')" rumpdisk
    return 1
  fi
  log "rumpdisk with nvme0 serving $(since "$started") s after xl create: $(grep -a -m1 'NVMe disk nvme0 ready' "$(console_log rumpdisk)" | tr -d '\r')"
}

# A guest writes through rumpdisk's NVMe disk and reads back; rumpdisk is
# destroyed and recreated (the controller is reset and brought up again),
# and a fresh guest reads the same data.
test_rumpdisk_nvme() {
  modprobe xen-pciback 2>/dev/null
  if ! xl pci-assignable-list | grep -q "$NVME_ADDRESS"; then
    xl pci-assignable-add "$NVME_ADDRESS" ||
      { fail "$1" "pci-assignable-add" "xl pci-assignable-add $NVME_ADDRESS failed"; return; }
  fi
  nvme_rumpdisk_up "$1" || return
  start_guest rn-writer "wait:xvdb+write:xvdb:0:8+read:xvdb:0:8" || { fail "$1" "xl create rn-writer" "see above"; return; }
  rumpdisk_attach rn-writer xvdb nvme0 || { fail "$1" "block-attach" "xl block-attach failed" rumpdisk rn-writer; return; }
  wait_step rn-writer 2 180 || { fail "$1" "guest write" "$(step_line rn-writer 2)" rn-writer rumpdisk; return; }
  wait_step rn-writer 3 60 || { fail "$1" "guest read back" "$(step_line rn-writer 3)" rn-writer rumpdisk; return; }
  local wrote read
  wrote=$(step_value rn-writer 2 wrote)
  read=$(step_value rn-writer 3 md5)
  [ "$read" = "$wrote" ] || { fail "$1" "read back" "wrote $wrote, read $read" rn-writer rumpdisk; return; }
  destroy_domain rn-writer
  dump_console rumpdisk 40
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
  # Later tests expect the RAM-disk rumpdisk of rumpdisk.cfg.
  destroy_domain rumpdisk
  pass "$1" "8 MiB written through nvme0 and read back ($wrote); after xl destroy and a new rumpdisk, a fresh guest read the same data"
}
