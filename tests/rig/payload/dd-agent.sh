#!/bin/bash
# Runs inside the Linux reference driver domain (a PV domU with
# driver_domain=1 booted from the rig's root filesystem). It serves:
#   block: /dev/ram0 and /dev/ram1 (brd, 64 MiB each) via kernel blkback;
#   net:   vifs on bridge ddbr0 via kernel netback;
#   and, when PCI devices are passed through to it, /dev/nvme0n1 (an NVMe
#   controller), /dev/vda (a virtio-blk function) and an e1000 NIC as a
#   port of ddbr0;
# with `xl devd` running the hotplug scripts, as a driver domain should.
# dom0 talks to it through xenstore: it writes data/ready once xl devd runs,
# and answers data/request ("<id> <command>") in data/reply ("<id> <answer>").
# The bridge is made the way Xen's own scripts make one (no STP, no forward
# delay) and carries DD_BRIDGE_ADDRESS, so guests can reach dd itself too.
exec 2>&1
. /rig/lib.sh
log "dd: userspace up, kernel $(uname -r)"
xen_kernel_interfaces
modprobe -a xen-blkback xen-netback bridge
modprobe brd rd_nr=2 rd_size=65536
DD_BRIDGE_ADDRESS=169.254.60.1/24
ip link add ddbr0 type bridge stp_state 0 forward_delay 0
ip link set ddbr0 up
ip addr add "$DD_BRIDGE_ADDRESS" dev ddbr0
xl -v devd -F -p /run/xldevd.pid > /var/log/xen/xldevd.log 2>&1 &
sleep 1
# PCI devices passed through (xl's pci=, as the bench does with the rig's
# NVMe controller, virtio-blk function and e1000) arrive by pcifront; with
# no udev, the drivers are loaded here. Before data/ready: data/nvme and
# data/virtio name the block device the NVMe namespace or the virtio disk
# became, or say why there is none; data/uplink names the NIC now on bridge
# ddbr0, or says why there is none.

# pci_functions: one line per PCI function dd sees, ADDRESS=VENDOR:DEVICE:CLASS.
pci_functions() {
  local function
  for function in /sys/bus/pci/devices/*; do
    [ -e "$function" ] && echo "$(basename "$function")=$(cat "$function/vendor"):$(cat "$function/device"):$(cat "$function/class")"
  done
}

# pci_disk NODE DISK WHAT MODULE...: load the MODULEs and wait up to 120 s
# for /dev/DISK; name it in data/NODE, or write there why there is none. The
# interrupt lines counted are those /proc/interrupts names after NODE.
pci_disk() {
  local node=$1 disk=$2 what=$3
  shift 3
  modprobe -a "$@"
  for _ in $(seq 1 240); do [ -b "/dev/$disk" ] && break; sleep 0.5; done
  if [ -b "/dev/$disk" ]; then
    xenstore-write "data/$node" "$disk"
    log "dd: $what /dev/$disk, $(cat "/sys/block/$disk/size") sectors; $(grep -c "$node" /proc/interrupts) $node interrupt line(s)"
  else
    xenstore-write "data/$node" "missing: $(dmesg | grep -iE "$node|pcifront|swiotlb" | tail -3 | tr '\n' ' ')"
    log "dd: no /dev/$disk after 120 s:"; dmesg | grep -iE "$node|pci|swiotlb" | tail -20
  fi
}

if xenstore-read device/pci/0/backend-id >/dev/null 2>&1; then
  modprobe xen-pcifront
  for _ in $(seq 1 120); do [ -n "$(ls /sys/bus/pci/devices 2>/dev/null)" ] && break; sleep 0.5; done
  log "dd: PCI functions: $(pci_functions | tr '\n' ' ')"
  # Class 0x010802: an NVMe controller.
  if pci_functions | grep -q ':0x010802$'; then pci_disk nvme nvme0n1 "NVMe namespace" nvme; fi
  # Red Hat's vendor id with device 0x1001: a legacy virtio-blk function, the
  # only virtio device dd is given, so its disk is vda.
  if pci_functions | grep -q '=0x1af4:0x1001:'; then pci_disk virtio vda "virtio-blk disk" virtio_pci virtio_blk; fi
  # Class 0x0200xx: an Ethernet controller.
  if pci_functions | grep -q ':0x0200[0-9a-f]*$'; then
    modprobe e1000
    nic=
    for _ in $(seq 1 120); do
      for device in /sys/class/net/*; do
        [ "$(basename "$(readlink -f "$device/device/driver" 2>/dev/null)")" = e1000 ] && nic=$(basename "$device")
      done
      [ -n "$nic" ] && break
      sleep 0.5
    done
    if [ -n "$nic" ]; then
      ip link set "$nic" master ddbr0
      ip link set "$nic" up
      xenstore-write data/uplink "$nic"
      log "dd: e1000 $nic ($(cat "/sys/class/net/$nic/address")) on ddbr0"
    else
      xenstore-write data/uplink "missing: $(dmesg | grep -iE 'e1000|pcifront' | tail -3 | tr '\n' ' ')"
      log "dd: no e1000 interface after 60 s:"; dmesg | grep -iE 'e1000|pci' | tail -20
    fi
  fi
fi
xenstore-write data/ready 1
log "dd: domid $(xenstore-read domid), xl devd running, ram disks: $(ls /dev/ram* | tr '\n' ' ')"

answer() { # command -> one line
  case $1 in
    md5:*) # md5:DEV:OFFSET_MIB:MIB
      local device offset length
      IFS=: read -r _ device offset length <<<"$1"
      sync
      dd if="/dev/$device" bs=1M skip="$offset" count="$length" iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1 ;;
    net) # one line: each bridge port with its state, then the learnt MACs
      echo "ports: $(bridge link show 2>&1 | awk '{for (i = 1; i <= NF; i++) if ($i == "state") s = $(i+1); print $2 s}' | tr '\n' ' ')" \
        "fdb: $(bridge fdb show br ddbr0 2>&1 | grep -v permanent | awk '{print $1 "@" $3}' | tr '\n' ' ')" \
        "vifs: $(ip -o link show 2>&1 | awk -F': ' '$2 ~ /^vif/ {print $2}' | cut -d@ -f1 | tr '\n' ' ')" ;;
    pci:*) # pci:NAME: how a passed-through device is driven: interrupts taken
      # on each line /proc/interrupts names after NAME (nvme, virtio), DMA bouncing
      echo "interrupts: $(awk -v name="${1#pci:}" 'index($NF, name) {print $NF ":" $2}' /proc/interrupts | tr '\n' ' ')" \
        "dma: $(dmesg | grep -iE 'swiotlb|IO TLB' | sed 's/^\[[^]]*\] *//' | tr '\n' ';')" ;;
    memused) # MiB in use: MemTotal - MemAvailable (RAM disk pages included)
      awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} END {printf "%.1f", (t - a) / 1024}' /proc/meminfo ;;
    logs)
      { echo "== xl devd"; cat /var/log/xen/xldevd.log; echo "== hotplug"; cat /var/log/xen/xen-hotplug.log
        echo "== links"; ip -br link; echo "== bridge"; bridge link; bridge fdb show br ddbr0
        echo "== addresses"; ip -br addr; echo "== counters"; ip -s -o link | grep -E 'vif|ddbr0'; }  2>&1 | sed 's/^/  [dd-log] /' >&2
      echo printed ;;
    *) echo "unknown-command" ;;
  esac
}
last=
while true; do
  request=$(xenstore-read data/request 2>/dev/null)
  if [ -n "$request" ] && [ "$request" != "$last" ]; then
    last=$request
    xenstore-write data/reply "${request%% *} $(answer "${request#* }")"
  fi
  sleep 0.3
done
