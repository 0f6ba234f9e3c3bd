//! Event channel rules: binding, delivery, masking, blocking waits, close.

use std::time::Duration;

use xenbus::platform::{EventChannels, EvtchnError, DOMID_SELF};
use xensim::{Hypervisor, PortStatus, LONG_WAIT};

const SHORT: Duration = Duration::from_millis(20);

#[test]
fn bind_send_and_receive_both_ways() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();
    assert_eq!(
        frontend.port_status(frontend_port),
        PortStatus::Unbound {
            remote: backend.domid()
        }
    );
    let backend_port = backend
        .clone()
        .bind_interdomain(frontend.domid(), frontend_port)
        .unwrap();
    assert_eq!(
        frontend.port_status(frontend_port),
        PortStatus::Interdomain {
            remote: backend.domid(),
            remote_port: backend_port
        }
    );
    // Binding marks the new local port pending (lost notifications).
    assert_eq!(backend.poll_ports(), vec![backend_port]);
    assert_eq!(backend.poll_ports(), Vec::<u32>::new());

    frontend.send(frontend_port).unwrap();
    assert_eq!(backend.poll_ports(), vec![backend_port]);
    backend.clone().notify(backend_port);
    assert_eq!(frontend.poll_ports(), vec![frontend_port]);
    assert!(frontend.poll_ports().is_empty());
}

#[test]
fn ports_are_lowest_free_and_never_zero() {
    let xen = Hypervisor::new();
    let domain = xen.create_domain("guest");
    let a = domain.alloc_unbound(0).unwrap();
    let b = domain.alloc_unbound(0).unwrap();
    assert_eq!((a, b), (1, 2));
    domain.close_port(a).unwrap();
    assert_eq!(domain.alloc_unbound(0).unwrap(), 1);
}

#[test]
fn bind_errors() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let third = xen.create_domain("other");
    let port = frontend.alloc_unbound(backend.domid()).unwrap();
    assert_eq!(backend.bind(99, port), Err(EvtchnError::NoSuchPort));
    assert_eq!(
        backend.bind(frontend.domid(), 0),
        Err(EvtchnError::NoSuchPort)
    );
    assert_eq!(
        backend.bind(frontend.domid(), 100_000),
        Err(EvtchnError::NoSuchPort)
    );
    // A closed port, and a port offered to someone else, are not bindable.
    assert_eq!(
        backend.bind(frontend.domid(), port + 1),
        Err(EvtchnError::NotBindable)
    );
    assert_eq!(
        third.bind(frontend.domid(), port),
        Err(EvtchnError::NotBindable)
    );
    backend.bind(frontend.domid(), port).unwrap();
    // Already bound.
    assert_eq!(
        backend.bind(frontend.domid(), port),
        Err(EvtchnError::NotBindable)
    );
}

#[test]
fn loopback_with_domid_self() {
    let xen = Hypervisor::new();
    let domain = xen.create_domain("guest");
    let unbound = domain.alloc_unbound(DOMID_SELF).unwrap();
    let bound = domain.bind(DOMID_SELF, unbound).unwrap();
    domain.poll_ports();
    domain.send(bound).unwrap();
    assert_eq!(domain.poll_ports(), vec![unbound]);
}

#[test]
fn send_on_unbound_is_dropped_and_on_closed_is_an_error() {
    let xen = Hypervisor::new();
    let domain = xen.create_domain("guest");
    let peer = xen.create_domain("peer");
    let port = domain.alloc_unbound(peer.domid()).unwrap();
    assert_eq!(domain.send(port), Ok(()));
    assert!(peer.poll_ports().is_empty());
    assert_eq!(domain.send(port + 1), Err(EvtchnError::NoSuchPort));
    assert_eq!(domain.send(0), Err(EvtchnError::NoSuchPort));
    assert_eq!(domain.send(u32::MAX), Err(EvtchnError::NoSuchPort));
}

#[test]
fn masked_port_stays_pending_until_unmasked() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();
    let backend_port = backend.bind(frontend.domid(), frontend_port).unwrap();
    backend.poll_ports();

    backend.mask(backend_port);
    assert!(backend.is_masked(backend_port));
    frontend.send(frontend_port).unwrap();
    assert!(backend.is_pending(backend_port));
    assert!(
        backend.poll_ports().is_empty(),
        "masked ports are not delivered"
    );
    assert!(backend.wait_ports(SHORT).is_empty());

    // Unmasking a pending port delivers it, and wakes a waiter.
    let waiter = {
        let backend = backend.clone();
        std::thread::spawn(move || backend.wait_ports(LONG_WAIT))
    };
    backend.clone().unmask(backend_port);
    let woken = waiter.join().unwrap();
    // The waiter took the event; the pending bit is consumed.
    assert_eq!(woken, vec![backend_port]);
    assert!(!backend.is_pending(backend_port));
}

#[test]
fn pending_bit_coalesces_notifications() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();
    let backend_port = backend.bind(frontend.domid(), frontend_port).unwrap();
    backend.poll_ports();
    for _ in 0..5 {
        frontend.send(frontend_port).unwrap();
    }
    assert_eq!(backend.poll_ports(), vec![backend_port]);
    assert!(backend.poll_ports().is_empty());
    frontend.send(frontend_port).unwrap();
    assert!(backend.clear_pending(backend_port));
    assert!(!backend.clear_pending(backend_port));
    assert!(backend.poll_ports().is_empty());
}

#[test]
fn blocking_wait_wakes_on_send_and_times_out() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();
    let backend_port = backend.bind(frontend.domid(), frontend_port).unwrap();
    backend.poll_ports();
    assert!(backend.wait_ports(SHORT).is_empty());

    let waiter = {
        let backend = backend.clone();
        std::thread::spawn(move || backend.wait_ports(LONG_WAIT))
    };
    frontend.send(frontend_port).unwrap();
    assert_eq!(waiter.join().unwrap(), vec![backend_port]);
}

#[test]
fn close_makes_the_peer_unbound_again() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();
    let backend_port = backend.bind(frontend.domid(), frontend_port).unwrap();
    backend.poll_ports();
    frontend.send(frontend_port).unwrap();

    backend.clone().close(backend_port);
    assert_eq!(backend.port_status(backend_port), PortStatus::Closed);
    assert!(
        !backend.is_pending(backend_port),
        "close clears the pending bit"
    );
    assert_eq!(
        frontend.port_status(frontend_port),
        PortStatus::Unbound {
            remote: backend.domid()
        }
    );
    // The frontend's sends are dropped now; the backend may bind again.
    frontend.send(frontend_port).unwrap();
    let again = backend.bind(frontend.domid(), frontend_port).unwrap();
    assert_eq!(backend.poll_ports(), vec![again]);
    assert_eq!(
        backend.close_port(again + 100),
        Err(EvtchnError::NoSuchPort)
    );
    backend.close_port(again).unwrap();
    assert_eq!(backend.close_port(again), Err(EvtchnError::NoSuchPort));
}

#[test]
fn destroying_a_domain_unbinds_its_peers() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();
    let backend_port = backend.bind(frontend.domid(), frontend_port).unwrap();
    xen.destroy_domain(frontend.domid()).unwrap();
    assert_eq!(
        backend.port_status(backend_port),
        PortStatus::Unbound {
            remote: frontend.domid()
        }
    );
    assert_eq!(backend.send(backend_port), Ok(()));
    assert_eq!(frontend.send(frontend_port), Err(EvtchnError::NoSuchPort));
}

#[test]
fn port_exhaustion() {
    let xen = Hypervisor::with_config(xensim::SimConfig {
        evtchn_ports: 4,
        ..xensim::SimConfig::default()
    });
    let domain = xen.create_domain("guest");
    for _ in 0..3 {
        domain.alloc_unbound(0).unwrap();
    }
    assert_eq!(domain.alloc_unbound(0), Err(EvtchnError::NoFreePort));
}

#[test]
fn activity_combines_ports_and_watches() {
    use xenbus::platform::Xenstore;
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();
    let backend_port = backend.bind(frontend.domid(), frontend_port).unwrap();
    backend.clone().watch("data", "token").unwrap();
    let activity = backend.wait_activity(LONG_WAIT);
    assert_eq!(activity.ports, vec![backend_port]);
    assert_eq!(activity.watches.len(), 1);
    assert!(backend.wait_activity(SHORT).ports.is_empty());
}

#[test]
fn frontend_may_rebind_the_port_its_close_left_unbound() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let frontend_port = frontend.alloc_unbound(backend.domid()).unwrap();
    let backend_port = backend.bind(frontend.domid(), frontend_port).unwrap();
    frontend.close_port(frontend_port).unwrap();
    // The backend's port now waits for the frontend, which may bind it
    // from its side: the backend keeps its port number, with a new peer.
    let again = frontend.bind(backend.domid(), backend_port).unwrap();
    assert_eq!(
        backend.port_status(backend_port),
        PortStatus::Interdomain {
            remote: frontend.domid(),
            remote_port: again
        }
    );
    backend.poll_ports();
    frontend.send(again).unwrap();
    assert_eq!(backend.poll_ports(), vec![backend_port]);
}
