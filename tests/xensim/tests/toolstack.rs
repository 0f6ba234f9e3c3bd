//! The toolstack helper writes the node sets libxl writes, with the same
//! permissions, as captured on a real Xen 4.17 system (the lab's
//! xenstore-reference.txt, minus the nodes written later by the backend,
//! the frontend and the hotplug script).

use xenbus::platform::{TxId, Xenstore, XsError};
use xensim::{DeviceKind, Hypervisor, VbdConfig, VifConfig};

/// Domains 1..=6 so the ids match the reference capture (dd = 4, blk1 = 5,
/// net1 = 6).
fn machine() -> Hypervisor {
    let xen = Hypervisor::new();
    for name in ["d1", "d2", "d3", "dd", "blk1", "net1"] {
        xen.create_domain(name);
    }
    xen
}

fn sorted(lines: Vec<String>) -> Vec<String> {
    let mut lines = lines;
    lines.sort();
    lines
}

fn expected(lines: &[&str]) -> Vec<String> {
    sorted(lines.iter().map(|line| line.to_string()).collect())
}

#[test]
fn vbd_nodes_match_libxl() {
    let xen = machine();
    let mut config = VbdConfig::new(4, 5, "/srv/disk.img");
    config.vdev = "xvdb".into();
    let nodes = xen.toolstack().attach_vbd(&config).unwrap();
    assert_eq!(nodes.kind, DeviceKind::Vbd);
    assert_eq!(nodes.devid, 51728);
    assert_eq!(
        sorted(xen.dump_store("/local/domain/4/backend")),
        expected(&[
            r#"/local/domain/4/backend = ""   (n0,r4)"#,
            r#"/local/domain/4/backend/vbd = ""   (n0,r4)"#,
            r#"/local/domain/4/backend/vbd/5 = ""   (n0,r4)"#,
            r#"/local/domain/4/backend/vbd/5/51728 = ""   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/frontend = "/local/domain/5/device/vbd/51728"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/params = "/srv/disk.img"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/script = "/etc/xen/scripts/block"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/frontend-id = "5"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/online = "1"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/removable = "0"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/bootable = "1"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/state = "1"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/dev = "xvdb"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/type = "phy"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/mode = "w"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/device-type = "disk"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/discard-enable = "1"   (n4,r5)"#,
            r#"/local/domain/4/backend/vbd/5/51728/specification = "xen"   (n4,r5)"#,
        ])
    );
    assert_eq!(
        sorted(xen.dump_store("/local/domain/5/device/vbd/51728")),
        expected(&[
            r#"/local/domain/5/device/vbd/51728 = ""   (n5,r4)"#,
            r#"/local/domain/5/device/vbd/51728/backend = "/local/domain/4/backend/vbd/5/51728"   (n5,r4)"#,
            r#"/local/domain/5/device/vbd/51728/backend-id = "4"   (n5,r4)"#,
            r#"/local/domain/5/device/vbd/51728/state = "1"   (n5,r4)"#,
            r#"/local/domain/5/device/vbd/51728/virtual-device = "51728"   (n5,r4)"#,
            r#"/local/domain/5/device/vbd/51728/device-type = "disk"   (n5,r4)"#,
            r#"/local/domain/5/device/vbd/51728/trusted = "1"   (n5,r4)"#,
        ])
    );
    assert_eq!(
        sorted(xen.dump_store("/libxl/5/device/vbd/51728")),
        expected(&[
            r#"/libxl/5/device/vbd/51728 = ""   (n0)"#,
            r#"/libxl/5/device/vbd/51728/frontend = "/local/domain/5/device/vbd/51728"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/backend = "/local/domain/4/backend/vbd/5/51728"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/params = "/srv/disk.img"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/script = "/etc/xen/scripts/block"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/frontend-id = "5"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/online = "1"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/removable = "0"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/bootable = "1"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/state = "1"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/dev = "xvdb"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/type = "phy"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/mode = "w"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/device-type = "disk"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/discard-enable = "1"   (n0)"#,
            r#"/libxl/5/device/vbd/51728/specification = "xen"   (n0)"#,
        ])
    );
}

#[test]
fn vif_nodes_match_libxl() {
    let xen = machine();
    let mut config = VifConfig::new(4, 6);
    config.mac = "00:16:3e:00:01:11".into();
    config.bridge = "ddbr0".into();
    let nodes = xen.toolstack().attach_vif(&config).unwrap();
    assert_eq!(nodes.backend, "/local/domain/4/backend/vif/6/0");
    assert_eq!(
        sorted(xen.dump_store("/local/domain/4/backend/vif")),
        expected(&[
            r#"/local/domain/4/backend/vif = ""   (n0,r4)"#,
            r#"/local/domain/4/backend/vif/6 = ""   (n0,r4)"#,
            r#"/local/domain/4/backend/vif/6/0 = ""   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/frontend = "/local/domain/6/device/vif/0"   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/frontend-id = "6"   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/online = "1"   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/state = "1"   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/script = "/etc/xen/scripts/vif-bridge"   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/mac = "00:16:3e:00:01:11"   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/bridge = "ddbr0"   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/handle = "0"   (n4,r6)"#,
            r#"/local/domain/4/backend/vif/6/0/type = "vif"   (n4,r6)"#,
        ])
    );
    assert_eq!(
        sorted(xen.dump_store("/local/domain/6/device/vif/0")),
        expected(&[
            r#"/local/domain/6/device/vif/0 = ""   (n6,r4)"#,
            r#"/local/domain/6/device/vif/0/backend = "/local/domain/4/backend/vif/6/0"   (n6,r4)"#,
            r#"/local/domain/6/device/vif/0/backend-id = "4"   (n6,r4)"#,
            r#"/local/domain/6/device/vif/0/state = "1"   (n6,r4)"#,
            r#"/local/domain/6/device/vif/0/handle = "0"   (n6,r4)"#,
            r#"/local/domain/6/device/vif/0/mac = "00:16:3e:00:01:11"   (n6,r4)"#,
            r#"/local/domain/6/device/vif/0/trusted = "1"   (n6,r4)"#,
            r#"/local/domain/6/device/vif/0/mtu = "1500"   (n4,r6)"#,
        ])
    );
}

#[test]
fn each_side_can_write_only_its_own_directory() {
    let xen = machine();
    let nodes = xen.toolstack().attach_vif(&VifConfig::new(4, 6)).unwrap();
    let mut backend = xen.domain(4).unwrap();
    let mut frontend = xen.domain(6).unwrap();
    let mut bystander = xen.domain(5).unwrap();
    let none = TxId::NONE;
    // Each side reads both directories and writes its own.
    backend
        .write(none, &format!("{}/feature-sg", nodes.backend), "1")
        .unwrap();
    assert_eq!(
        frontend
            .read(none, &format!("{}/feature-sg", nodes.backend))
            .unwrap(),
        "1"
    );
    frontend
        .write(none, &format!("{}/tx-ring-ref", nodes.frontend), "8")
        .unwrap();
    assert_eq!(
        backend
            .read(none, &format!("{}/tx-ring-ref", nodes.frontend))
            .unwrap(),
        "8"
    );
    assert_eq!(
        frontend.write(none, &format!("{}/state", nodes.backend), "4"),
        Err(XsError::Eacces)
    );
    assert_eq!(
        backend.write(none, &format!("{}/state", nodes.frontend), "4"),
        Err(XsError::Eacces)
    );
    // The guest cannot change its MTU; the backend owns that node.
    assert_eq!(
        frontend.write(none, &format!("{}/mtu", nodes.frontend), "9000"),
        Err(XsError::Eacces)
    );
    // Nobody else sees anything.
    assert_eq!(
        bystander.read(none, &format!("{}/mac", nodes.frontend)),
        Err(XsError::Eacces)
    );
    assert_eq!(
        bystander.read(none, &format!("{}/mac", nodes.backend)),
        Err(XsError::Eacces)
    );
    assert_eq!(
        frontend.read(none, &format!("{}/mac", nodes.libxl)),
        Err(XsError::Eacces)
    );
    // The backend can discover its devices by listing its backend directory.
    assert_eq!(backend.directory(none, "backend/vif").unwrap(), vec!["6"]);
}

#[test]
fn detach_sets_online_0_and_closing_then_removes() {
    let xen = machine();
    let toolstack = xen.toolstack();
    let nodes = toolstack
        .attach_vbd(&VbdConfig::new(4, 5, "/srv/disk.img"))
        .unwrap();
    let mut backend = xen.domain(4).unwrap();
    let none = TxId::NONE;
    backend
        .write(none, &format!("{}/state", nodes.backend), "4")
        .unwrap();
    toolstack.begin_detach(&nodes).unwrap();
    assert_eq!(
        backend
            .read(none, &format!("{}/online", nodes.backend))
            .unwrap(),
        "0"
    );
    assert_eq!(
        backend
            .read(none, &format!("{}/state", nodes.backend))
            .unwrap(),
        "5"
    );
    assert!(!toolstack.backend_closed(&nodes));

    // The backend closes from another thread; the toolstack waits for it.
    let closer = {
        let mut backend = backend.clone();
        let path = format!("{}/state", nodes.backend);
        std::thread::spawn(move || backend.write(TxId::NONE, &path, "6").unwrap())
    };
    toolstack
        .wait_backend_closed(&nodes, xensim::LONG_WAIT)
        .unwrap();
    closer.join().unwrap();
    toolstack.finish_detach(&nodes).unwrap();
    let mut dom0 = xen.dom0();
    for path in [&nodes.frontend, &nodes.backend, &nodes.libxl] {
        assert_eq!(dom0.read(none, path), Err(XsError::Enoent), "{path}");
    }
    // Empty parents went too, as libxl__xs_path_cleanup does.
    assert_eq!(
        dom0.read(none, "/local/domain/4/backend"),
        Err(XsError::Enoent)
    );
    assert_eq!(
        dom0.read(none, "/local/domain/5/device/vbd"),
        Err(XsError::Enoent)
    );
    assert_eq!(dom0.read(none, "/local/domain/4/name").unwrap(), "dd");
}

#[test]
fn detach_of_closed_backend_keeps_its_state() {
    let xen = machine();
    let toolstack = xen.toolstack();
    let nodes = toolstack
        .attach_vbd(&VbdConfig::new(4, 5, "/srv/disk.img"))
        .unwrap();
    let mut backend = xen.domain(4).unwrap();
    backend
        .write(TxId::NONE, &format!("{}/state", nodes.backend), "6")
        .unwrap();
    toolstack.begin_detach(&nodes).unwrap();
    assert_eq!(
        backend
            .read(TxId::NONE, &format!("{}/state", nodes.backend))
            .unwrap(),
        "6"
    );
    assert!(toolstack.backend_closed(&nodes));
}

#[test]
fn wait_for_backend_that_never_closes_times_out() {
    let xen = machine();
    let toolstack = xen.toolstack();
    let nodes = toolstack
        .attach_vbd(&VbdConfig::new(4, 5, "/srv/disk.img"))
        .unwrap();
    toolstack.begin_detach(&nodes).unwrap();
    assert_eq!(
        toolstack.wait_backend_closed(&nodes, std::time::Duration::from_millis(20)),
        Err(xensim::SimError::Timeout)
    );
}

#[test]
fn destroy_domain_removes_devices_and_home() {
    let xen = machine();
    let toolstack = xen.toolstack();
    let vbd = toolstack
        .attach_vbd(&VbdConfig::new(4, 5, "/srv/disk.img"))
        .unwrap();
    let vif = toolstack.attach_vif(&VifConfig::new(4, 5)).unwrap();
    assert_eq!(
        toolstack.devices(5).unwrap(),
        vec![vbd.clone(), vif.clone()]
    );
    let mut dom0 = xen.dom0();
    dom0.watch("@releaseDomain", "release").unwrap();
    dom0.poll_watches();
    toolstack.destroy_domain(5).unwrap();
    assert!(xen.domain(5).is_none());
    for path in [&vbd.backend, &vif.backend, "/local/domain/5", "/libxl/5"] {
        assert_eq!(dom0.read(TxId::NONE, path), Err(XsError::Enoent), "{path}");
    }
    assert!(dom0
        .poll_watches()
        .iter()
        .any(|event| event.path == "@releaseDomain"));
    assert_eq!(
        toolstack.destroy_domain(5),
        Err(xensim::SimError::NoSuchDomain)
    );
}

#[test]
fn detach_waits_for_a_backend_thread_then_removes() {
    let xen = machine();
    let toolstack = xen.toolstack();
    let nodes = toolstack
        .attach_vbd(&VbdConfig::new(4, 5, "/srv/disk.img"))
        .unwrap();
    // A backend thread that closes when asked to.
    let backend = {
        let mut backend = xen.domain(4).unwrap();
        let state = format!("{}/state", nodes.backend);
        std::thread::spawn(move || {
            backend.watch(&state, "closer").unwrap();
            loop {
                backend.wait_watch(xensim::LONG_WAIT).expect("an event");
                if backend.read(TxId::NONE, &state).as_deref() == Ok("5") {
                    backend.write(TxId::NONE, &state, "6").unwrap();
                    return;
                }
            }
        })
    };
    assert_eq!(toolstack.detach(&nodes, xensim::LONG_WAIT), Ok(true));
    backend.join().unwrap();
    assert_eq!(
        xen.dom0().read(TxId::NONE, &nodes.backend),
        Err(XsError::Enoent)
    );
}

#[test]
fn detach_forces_removal_when_the_backend_never_closes() {
    let xen = machine();
    let toolstack = xen.toolstack();
    let nodes = toolstack.attach_vif(&VifConfig::new(4, 6)).unwrap();
    assert_eq!(
        toolstack.detach(&nodes, std::time::Duration::from_millis(20)),
        Ok(false)
    );
    assert_eq!(
        xen.dom0().read(TxId::NONE, &nodes.frontend),
        Err(XsError::Enoent)
    );
}

#[test]
fn generic_device_has_libxl_common_keys() {
    let xen = machine();
    let nodes = xen
        .toolstack()
        .attach_device(
            DeviceKind::Other("vkbd"),
            4,
            5,
            0,
            &[("feature-abs-pointer", "1")],
            &[("request-abs-pointer", "1")],
        )
        .unwrap();
    assert_eq!(nodes.backend, "/local/domain/4/backend/vkbd/5/0");
    let mut dom0 = xen.dom0();
    let read = |dom0: &mut xensim::Domain, path: String| dom0.read(TxId::NONE, &path).unwrap();
    assert_eq!(read(&mut dom0, format!("{}/online", nodes.backend)), "1");
    assert_eq!(read(&mut dom0, format!("{}/state", nodes.backend)), "1");
    assert_eq!(
        read(&mut dom0, format!("{}/frontend-id", nodes.backend)),
        "5"
    );
    assert_eq!(
        read(&mut dom0, format!("{}/feature-abs-pointer", nodes.backend)),
        "1"
    );
    assert_eq!(
        read(&mut dom0, format!("{}/backend-id", nodes.frontend)),
        "4"
    );
    assert_eq!(
        read(&mut dom0, format!("{}/request-abs-pointer", nodes.frontend)),
        "1"
    );
    // Destroying the guest cleans up kinds this module has no name for.
    xen.toolstack().destroy_domain(5).unwrap();
    assert_eq!(dom0.read(TxId::NONE, &nodes.backend), Err(XsError::Enoent));
}

#[test]
fn frontend_removing_its_directory_fires_the_backend_state_watch() {
    let xen = machine();
    let nodes = xen
        .toolstack()
        .attach_vbd(&VbdConfig::new(4, 5, "/srv/disk.img"))
        .unwrap();
    let mut backend = xen.domain(4).unwrap();
    let mut frontend = xen.domain(5).unwrap();
    let state = format!("{}/state", nodes.frontend);
    backend.watch(&state, "fe-state").unwrap();
    backend.poll_watches();
    frontend.rm(TxId::NONE, &nodes.frontend).unwrap();
    assert_eq!(
        backend.poll_watches(),
        vec![xensim::WatchEvent {
            path: state.clone(),
            token: "fe-state".into()
        }]
    );
    assert_eq!(backend.read(TxId::NONE, &state), Err(XsError::Eacces));
}

#[test]
fn frontend_owns_its_directory_and_can_shut_the_backend_out() {
    use xenbus::platform::{Access, Permission};
    let xen = machine();
    let nodes = xen
        .toolstack()
        .attach_vbd(&VbdConfig::new(4, 5, "/srv/disk.img"))
        .unwrap();
    let mut backend = xen.domain(4).unwrap();
    let mut frontend = xen.domain(5).unwrap();
    let ring_ref = format!("{}/ring-ref", nodes.frontend);
    frontend.write(TxId::NONE, &ring_ref, "8").unwrap();
    assert_eq!(backend.read(TxId::NONE, &ring_ref).unwrap(), "8");
    frontend
        .set_perms(
            TxId::NONE,
            &ring_ref,
            &[Permission {
                domid: 5,
                access: Access::None,
            }],
        )
        .unwrap();
    // A hostile frontend can do this; the backend must cope with EACCES.
    assert_eq!(backend.read(TxId::NONE, &ring_ref), Err(XsError::Eacces));
    // It cannot give the node to the backend, though.
    assert_eq!(
        frontend.set_perms(
            TxId::NONE,
            &ring_ref,
            &[Permission {
                domid: 4,
                access: Access::Both,
            }],
        ),
        Err(XsError::Eperm)
    );
}

#[test]
fn destroy_errors_and_dead_domain_handles() {
    let xen = machine();
    assert_eq!(xen.destroy_domain(0), Err(xensim::SimError::Dom0));
    assert_eq!(xen.destroy_domain(42), Err(xensim::SimError::NoSuchDomain));
    let guest = xen.domain(5).unwrap();
    xen.destroy_domain(5).unwrap();
    assert!(!guest.is_alive());
    assert_eq!(guest.name(), None);
    assert!(xen.domain(5).is_none());
    assert_eq!(xen.domids(), vec![0, 1, 2, 3, 4, 6]);
    // A new domain gets a fresh id.
    assert_eq!(xen.create_domain("next").domid(), 7);
}
