#!/bin/bash
# dom0's side of a rig boot: start the Xen toolstack, then run the tests
# named on the kernel command line (rig.tests=a+b+c) in that order. Test
# NAME is the shell function test_NAME (dashes become underscores) defined
# in one of /rig/tests-*.sh. Finally print a summary and return, after
# which rig-init powers the machine off.
exec 2>&1
. /rig/lib.sh
for file in /rig/tests-*.sh; do . "$file"; done

BOOTED=$(now)
log "dom0 userspace up, kernel $(uname -r)"
TESTS=
for word in $(cat /proc/cmdline); do
  case $word in rig.tests=*) TESTS=${word#rig.tests=} ;; esac
done

XEN_BIN=/usr/lib/xen-4.17/bin
xen_kernel_interfaces
modprobe -a xen-blkback xen-netback xen-blkfront xen-netfront loop bridge 2>/dev/null
XENSTORED_ROOTDIR=/run/xenstored "$XEN_BIN/xenstored" --pid-file /run/xenstored.pid
"$XEN_BIN/xen-init-dom0"
"$XEN_BIN/xenconsoled" --pid-file /run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
log "toolstack up $(since "$BOOTED") s after dom0 init"

# Domains that tests share; everything else is destroyed after each test.
KEEP_DOMAINS="Domain-0 dd rumpdisk rumpnet"
# heartbeat TEST: while a test runs, say every minute what dom0 is waiting
# on, so a hang shows in the serial log as a command, not as silence.
heartbeat() {
  local began
  began=$(now)
  while sleep 60; do
    echo "RIG-WAIT $1 +$(since "$began") s: domains: $(xl list 2>/dev/null | awk 'NR > 1 {printf "%s(%s) ", $1, $5}')"
    ps -eo etimes=,args= | grep -E ' (xl|fio|dd|timeout|/bin/sh /etc/xen/scripts/[a-z-]+|/bin/bash /etc/xen/scripts/[a-z-]+)( |$)' |
      grep -v grep | sed "s/^/RIG-WAIT $1   running for /"
  done
}

for test in ${TESTS//+/ }; do
  echo "RIG-TEST-BEGIN $test"
  started=$(now)
  function=test_${test//-/_}
  heartbeat "$test" &
  heartbeat_pid=$!
  if declare -F "$function" >/dev/null; then
    "$function" "$test"
  else
    echo "RIG-RESULT $test FAIL step 'lookup': no such test"
    FAILED=$((FAILED + 1))
  fi
  kill "$heartbeat_pid" 2>/dev/null
  # In parallel: each destroy waits for its backends' hotplug scripts.
  # (Wait for these jobs only: a bare `wait` would also wait for any other
  # background job of this shell.)
  destroying=
  for domain in $(xl list | awk 'NR > 1 {print $1}'); do
    case " $KEEP_DOMAINS " in
      *" $domain "*) ;;
      *) destroy_domain "$domain" & destroying="$destroying $!" ;;
    esac
  done
  [ -z "$destroying" ] || wait $destroying
  log "$test took $(since "$started") s"
  echo "RIG-TEST-END $test"
done

# No clean-up: the machine powers off next, and destroying the driver
# domains would only cost time.
xl list
log "all tests took $(since "$BOOTED") s"
echo "RIG-SUMMARY $PASSED passed, $FAILED failed, $SKIPPED skipped"
