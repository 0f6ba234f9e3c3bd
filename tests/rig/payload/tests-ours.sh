# Our driver domains, booted from target/domains/<name> with
# xl-configs/<name>.cfg (copied into the payload by xtask). A domain counts
# as started when its console prints a line with the word "serving" (as in
# "rumpdisk: serving, watching backend/vbd"); the rig waits for that before
# attaching devices. Earlier lines ("RAM disk ram0 ready") do not count.

OUR_READY_REGEX='(^|[^[:alpha:]])([Ss]erving|SERVING)([^[:alpha:]]|$)'
OUR_START_SECONDS=120

# ensure_our_domain NAME: start NAME unless it already serves. On failure
# OUR_PROBLEM says why; a domain that failed once in this boot is not
# retried, so one broken image costs one timeout, not one per test.
ensure_our_domain() {
  local name=$1 failed_flag=OUR_FAILED_$1
  OUR_PROBLEM=
  if [ ! -f "/rig/domains/$name" ]; then
    OUR_PROBLEM="image not built: target/domains/$name is missing (cargo xtask build)"; return 1
  fi
  if [ ! -f "/rig/xl-configs/$name.cfg" ]; then
    OUR_PROBLEM="xl-configs/$name.cfg is missing"; return 1
  fi
  if [ -n "${!failed_flag:-}" ]; then
    OUR_PROBLEM="$name failed to start earlier in this boot: ${!failed_flag}"; return 1
  fi
  if domain_exists "$name" && ! domain_crashed "$name" && console_has "$name" "$OUR_READY_REGEX"; then
    return 0
  fi
  destroy_domain "$name"
  # The config as users run it, with the kernel path of this machine.
  sed -E -e "s|^[[:space:]]*kernel[[:space:]]*=.*|kernel = \"/rig/domains/$name\"|" \
         -e "s|^[[:space:]]*name[[:space:]]*=.*|name = \"$name\"|" \
    "/rig/xl-configs/$name.cfg" > "/tmp/$name.cfg"
  rm -f "$(console_log "$name")"
  local started
  started=$(now)
  if ! xl create "/tmp/$name.cfg" > "/tmp/$name.create.log" 2>&1; then
    cat "/tmp/$name.create.log"
    OUR_PROBLEM="xl create failed: $(tail -2 "/tmp/$name.create.log" | tr '\n' ' ')"
  else
    local rounds=$((OUR_START_SECONDS * 2))
    while [ $rounds -gt 0 ]; do
      if console_has "$name" "$OUR_READY_REGEX"; then
        OUR_READY_SECONDS=$(since "$started")
        log "$name serving $OUR_READY_SECONDS s after xl create: $(grep -aE "$OUR_READY_REGEX" "$(console_log "$name")" | head -1 | tr -d '\r')"
        return 0
      fi
      if ! domain_exists "$name" || domain_crashed "$name"; then
        OUR_PROBLEM="$name crashed or exited while starting"; break
      fi
      sleep 0.5
      rounds=$((rounds - 1))
    done
    [ -n "$OUR_PROBLEM" ] || OUR_PROBLEM="no ready line on $name's console within $OUR_START_SECONDS s"
    dump_console "$name" 60
    diag_domain "$name"
  fi
  printf -v "$failed_flag" '%s' "$OUR_PROBLEM"
  return 1
}

# our_check TEST NAME: after a test's actions, the driver domain must still run.
our_still_running() {
  domain_exists "$1" && ! domain_crashed "$1"
}
