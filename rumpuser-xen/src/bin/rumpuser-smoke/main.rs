//! rumpuser-smoke: a test image that runs the rumpuser(3) hypercalls of
//! `rumpuser-xen` on real Xen, with this binary in the place of a NetBSD
//! rump kernel.
//!
//! Layer: a thin binary at the top, like `domains/*`, but a test. Below it
//! is the platform (`rumpuser_xen::pv`, whose `rumpuser_host` runs the
//! hypercalls on `pv::sched` threads, Xen time and the console ring) and
//! the exported C symbols of `rumpuser_xen::rumpuser`, which it calls
//! through `extern "C"` declarations written from NetBSD's
//! [`rumpuser.h`](https://github.com/NetBSD/src/blob/trunk/sys/rump/include/rump/rumpuser.h)
//! as `librump` does. It supplies the upcalls of `struct rumpuser_hyperup`
//! itself: one rump kernel CPU handed out through a rumpuser spin mutex and
//! condition variable, as NetBSD's rump scheduler does, and lwps that are
//! just distinct addresses. Calling C functions is what makes this binary
//! `unsafe`, as the conformance tests of `rumpuser-xen` are.
//!
//! Each check prints `RUMPUSER-CHECK <name> PASS|FAIL <detail>` on the
//! console, then `RUMPUSER-SMOKE <n> passed, <m> failed`, and the domain
//! powers off through `rumpuser_exit`. The rig test `rumpuser-xen`
//! (`tests/rig/payload/tests-rumpuser.sh`) boots it and reads those lines.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
mod smoke;

/// On the host there is nothing to run: the checks need Xen.
#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "rumpuser-smoke runs as a Xen PV domain: build it with `cargo xtask build` \
         and boot it with `cargo xtask e2e rumpuser-xen`"
    );
}
