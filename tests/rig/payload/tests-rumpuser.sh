# The rumpuser(3) hypercalls on real Xen: rumpuser-xen/src/bin/rumpuser-smoke plays a rump
# kernel against rumpuser-xen's Xen host (pv::sched threads, Xen clocks,
# the console) and reports one RUMPUSER-CHECK line per check, then
# "RUMPUSER-SMOKE <n> passed, <m> failed", and powers off.

RUMPUSER_SMOKE_SECONDS=120

test_rumpuser_xen() {
  local name=rumpuser-smoke image=/rig/domains/rumpuser-smoke
  if [ ! -f "$image" ]; then
    fail "$1" "image" "not built: target/domains/rumpuser-smoke is missing (cargo xtask build)"; return
  fi
  # Kept after poweroff or crash, so that xenconsoled has read the whole
  # console ring before the domain goes; destroyed after the test.
  cat > "/tmp/$name.cfg" <<CFG
name = "$name"
type = "pv"
kernel = "$image"
memory = 48
vcpus = 1
extra = "expect_hostname=$name"
on_poweroff = "preserve"
on_crash = "preserve"
on_reboot = "preserve"
CFG
  destroy_domain "$name"
  rm -f "$(console_log "$name")"
  local started
  started=$(now)
  if ! timeout 120 xl create "/tmp/$name.cfg" > "/tmp/$name.create.log" 2>&1; then
    cat "/tmp/$name.create.log"
    fail "$1" "xl create" "$(tail -2 "/tmp/$name.create.log" | tr '\n' ' ')"; return
  fi
  if ! wait_for "$RUMPUSER_SMOKE_SECONDS" console_has "$name" '^RUMPUSER-SMOKE '; then
    diag_domain "$name"
    fail "$1" "checks" "no RUMPUSER-SMOKE line within $RUMPUSER_SMOKE_SECONDS s (hung or crashed)" "$name"; return
  fi
  local log summary failed
  log=$(console_log "$name")
  grep -a '^RUMPUSER-CHECK ' "$log" | tr -d '\r'
  summary=$(grep -a '^RUMPUSER-SMOKE ' "$log" | tail -1 | tr -d '\r')
  failed=$(grep -a '^RUMPUSER-CHECK [^ ]* FAIL' "$log" | tr -d '\r' | awk '{print $2}' | tr '\n' ' ')
  # rumpuser_exit(0) powers the domain off: 's' (shut down), not crashed.
  local state=
  wait_for 20 sh -c "xl list $name 2>/dev/null | awk 'NR == 2 {exit !(\$5 ~ /s/)}'" && state=off
  if ! echo "$summary" | grep -qE '^RUMPUSER-SMOKE [1-9][0-9]* passed, 0 failed$'; then
    fail "$1" "checks" "${summary#RUMPUSER-SMOKE } (failed: ${failed:-none named})" "$name"
  elif [ "$state" != off ]; then
    fail "$1" "poweroff" "all checks passed, but rumpuser_exit(0) did not power the domain off" "$name"
  else
    pass "$1" "${summary#RUMPUSER-SMOKE } in $(since "$started") s, then powered off"
  fi
}
