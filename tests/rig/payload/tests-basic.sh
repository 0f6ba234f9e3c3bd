# Tests of the rig itself: the toolstack answers and a guest boots.

test_xl_info() {
  if xl info > /tmp/xl-info 2>&1; then
    pass "$1" "Xen $(awk '/^xen_version/ {print $3}' /tmp/xl-info), $(awk '/^nr_cpus/ {print $3}' /tmp/xl-info) CPUs, free $(awk '/^free_memory/ {print $3}' /tmp/xl-info) MiB"
  else
    cat /tmp/xl-info
    fail "$1" "xl info" "the toolstack does not answer"
  fi
}

test_hello() {
  local started
  started=$(now)
  start_guest hello hello || { fail "$1" "xl create" "see the xl output above"; return; }
  local created
  created=$(since "$started")
  if wait_step hello 1 120; then
    pass "$1" "xl create returned after ${created} s, guest userspace after $(since "$started") s"
  else
    fail "$1" "guest boot" "no 'hello' step reported within 120 s" hello
  fi
}
