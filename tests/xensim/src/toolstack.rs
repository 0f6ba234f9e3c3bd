//! The toolstack's part (libxl's): creating and removing the xenstore
//! nodes of split devices served by a driver domain.
//!
//! Node sets, values and permissions are those libxl 4.17 writes for
//! `xl block-attach`/`disk=[...backend=<dd>]` and for a vif with
//! `backend=<dd>` (`tools/libs/light/libxl_disk.c`, `libxl_nic.c`,
//! `libxl__device_generic_add` in `libxl_device.c`), as captured from a
//! real system in the lab's `xenstore-reference.txt`:
//!
//! * frontend directory `/local/domain/<fe>/device/<kind>/<devid>`, owned
//!   by the frontend and readable by the backend, with `backend`,
//!   `backend-id`, `state = 1` and the kind's frontend keys (a vif's `mtu`
//!   is owned by the backend so the guest cannot change it);
//! * backend directory `/local/domain/<be>/backend/<kind>/<fe>/<devid>`,
//!   owned by the backend and readable by the frontend, with `frontend`,
//!   `frontend-id`, `online = 1`, `state = 1` and the kind's keys;
//! * `/libxl/<fe>/device/<kind>/<devid>`, dom0's private copy.
//!
//! The hotplug script's `hotplug-status`, `node` and `physical-device`
//! are not written: no script runs in the simulation.

use std::time::Duration;

use xenbus::platform::{Access, DomId, Permission, TxId, Xenstore, XsError};
use xenbus::XenbusState;

use crate::{Domain, Hypervisor, SimError};

/// The kind of a split device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A virtual block device (`vbd`, blkif).
    Vbd,
    /// A virtual network interface (`vif`, netif).
    Vif,
    /// Any other split device type, by its xenstore name.
    Other(&'static str),
}

impl DeviceKind {
    /// The xenstore name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Vbd => "vbd",
            DeviceKind::Vif => "vif",
            DeviceKind::Other(name) => name,
        }
    }
}

/// Where a device's nodes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNodes {
    /// The device kind.
    pub kind: DeviceKind,
    /// The frontend (guest) domain.
    pub frontend_id: DomId,
    /// The backend (driver) domain.
    pub backend_id: DomId,
    /// The device id (`virtual-device` of a vbd, `handle` of a vif).
    pub devid: u32,
    /// `/local/domain/<fe>/device/<kind>/<devid>`.
    pub frontend: String,
    /// `/local/domain/<be>/backend/<kind>/<fe>/<devid>`.
    pub backend: String,
    /// `/libxl/<fe>/device/<kind>/<devid>`.
    pub libxl: String,
}

impl DeviceNodes {
    /// The paths of a device.
    pub fn new(kind: DeviceKind, backend_id: DomId, frontend_id: DomId, devid: u32) -> Self {
        let name = kind.as_str();
        DeviceNodes {
            kind,
            frontend_id,
            backend_id,
            devid,
            frontend: format!("/local/domain/{frontend_id}/device/{name}/{devid}"),
            backend: format!("/local/domain/{backend_id}/backend/{name}/{frontend_id}/{devid}"),
            libxl: format!("/libxl/{frontend_id}/device/{name}/{devid}"),
        }
    }
}

/// A disk as `disk=[...]` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VbdConfig {
    /// The driver domain serving the disk.
    pub backend: DomId,
    /// The guest.
    pub frontend: DomId,
    /// Guest device name (`vdev`), e.g. `xvdb`.
    pub vdev: String,
    /// `target=`: the backing image or device.
    pub params: String,
    /// Writable (`w`) or read-only (`r`).
    pub writable: bool,
    /// CD-ROM (`cdrom`) instead of disk.
    pub cdrom: bool,
    /// `discard-enable`.
    pub discard_enable: bool,
    /// `script=`; libxl's default for `phy` is `/etc/xen/scripts/block`.
    pub script: String,
}

impl VbdConfig {
    /// A writable `phy` disk `xvdb` backed by `params`.
    pub fn new(backend: DomId, frontend: DomId, params: &str) -> Self {
        VbdConfig {
            backend,
            frontend,
            vdev: "xvdb".to_string(),
            params: params.to_string(),
            writable: true,
            cdrom: false,
            discard_enable: true,
            script: "/etc/xen/scripts/block".to_string(),
        }
    }
}

/// A network interface as `vif=[...]` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifConfig {
    /// The driver domain serving the interface.
    pub backend: DomId,
    /// The guest.
    pub frontend: DomId,
    /// The interface number (`handle` and devid).
    pub devid: u32,
    /// `mac=`, as `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// `bridge=`.
    pub bridge: String,
    /// `mtu=`.
    pub mtu: u32,
    /// `script=`.
    pub script: String,
}

impl VifConfig {
    /// Interface 0 with MAC `00:16:3e:00:00:<frontend>` on bridge `xenbr0`.
    pub fn new(backend: DomId, frontend: DomId) -> Self {
        VifConfig {
            backend,
            frontend,
            devid: 0,
            mac: format!("00:16:3e:00:00:{:02x}", frontend & 0xff),
            bridge: "xenbr0".to_string(),
            mtu: 1500,
            script: "/etc/xen/scripts/vif-bridge".to_string(),
        }
    }
}

/// Encodes a Linux-style disk name (`xvda`..`xvdz`, `xvdaa`..) as libxl's
/// `libxl__device_disk_dev_number` does for the xvd scheme:
/// `(202 << 8) | (disk << 4)` for the first 16 disks, `(1 << 28) | (disk << 8)`
/// beyond. Returns `None` for names this does not cover.
pub fn xvd_devid(vdev: &str) -> Option<u32> {
    let letters = vdev.strip_prefix("xvd")?;
    if letters.is_empty() || letters.len() > 2 || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let disk = letters.bytes().fold(0u32, |total, letter| {
        total * 26 + u32::from(letter - b'a') + 1
    }) - 1;
    Some(if disk < 16 {
        (202 << 8) | (disk << 4)
    } else {
        (1 << 28) | (disk << 8)
    })
}

/// How often a conflicting toolstack transaction is retried before the
/// conflict is reported.
const TRANSACTION_ATTEMPTS: usize = 100;

/// The libxl role: device and domain lifecycle, acting as dom0.
#[derive(Debug, Clone)]
pub struct Toolstack {
    hypervisor: Hypervisor,
    dom0: Domain,
}

impl Toolstack {
    pub(crate) fn new(hypervisor: Hypervisor) -> Self {
        let dom0 = hypervisor.dom0();
        Toolstack { hypervisor, dom0 }
    }

    /// Runs `body` in a transaction, retrying on `EAGAIN` as libxl does.
    fn transaction(
        &self,
        mut body: impl FnMut(&mut Domain, TxId) -> Result<(), XsError>,
    ) -> Result<(), XsError> {
        let mut dom0 = self.dom0.clone();
        for _ in 0..TRANSACTION_ATTEMPTS {
            let tx = dom0.transaction_start()?;
            if let Err(error) = body(&mut dom0, tx) {
                dom0.transaction_end(tx, false)?;
                return Err(error);
            }
            match dom0.transaction_end(tx, true) {
                Err(XsError::Eagain) => continue,
                other => return other,
            }
        }
        Err(XsError::Eagain)
    }

    /// `libxl__device_generic_add`.
    fn generic_add(
        &self,
        nodes: &DeviceNodes,
        backend_entries: &[(&str, String)],
        frontend_entries: &[(&str, String)],
        read_only_frontend_entries: &[(&str, String)],
    ) -> Result<(), XsError> {
        let frontend_perms = [
            Permission {
                domid: nodes.frontend_id,
                access: Access::None,
            },
            Permission {
                domid: nodes.backend_id,
                access: Access::Read,
            },
        ];
        let backend_perms = [
            Permission {
                domid: nodes.backend_id,
                access: Access::None,
            },
            Permission {
                domid: nodes.frontend_id,
                access: Access::Read,
            },
        ];
        self.transaction(|dom0, tx| {
            rm_checked(dom0, tx, &nodes.libxl)?;
            dom0.write(tx, &format!("{}/frontend", nodes.libxl), &nodes.frontend)?;
            dom0.write(tx, &format!("{}/backend", nodes.libxl), &nodes.backend)?;

            rm_checked(dom0, tx, &nodes.frontend)?;
            dom0.mkdir(tx, &nodes.frontend)?;
            dom0.set_perms(tx, &nodes.frontend, &frontend_perms)?;
            dom0.write(tx, &format!("{}/backend", nodes.frontend), &nodes.backend)?;
            for (key, value) in frontend_entries {
                let path = format!("{}/{key}", nodes.frontend);
                dom0.write(tx, &path, value)?;
                dom0.set_perms(tx, &path, &frontend_perms)?;
            }
            for (key, value) in read_only_frontend_entries {
                let path = format!("{}/{key}", nodes.frontend);
                dom0.write(tx, &path, value)?;
                dom0.set_perms(tx, &path, &backend_perms)?;
            }

            rm_checked(dom0, tx, &nodes.backend)?;
            dom0.mkdir(tx, &nodes.backend)?;
            dom0.set_perms(tx, &nodes.backend, &backend_perms)?;
            dom0.write(tx, &format!("{}/frontend", nodes.backend), &nodes.frontend)?;
            for (key, value) in backend_entries {
                dom0.write(tx, &format!("{}/{key}", nodes.backend), value)?;
            }
            // dom0's copy of the backend's entries.
            for (key, value) in backend_entries {
                dom0.write(tx, &format!("{}/{key}", nodes.libxl), value)?;
            }
            Ok(())
        })
    }

    /// Attaches a disk: what `xl block-attach <fe> ... backend=<be>` writes.
    /// The devid is the `virtual-device` number of `vdev`.
    pub fn attach_vbd(&self, config: &VbdConfig) -> Result<DeviceNodes, SimError> {
        let devid = xvd_devid(&config.vdev).ok_or(SimError::Xenstore(XsError::Einval))?;
        let nodes = DeviceNodes::new(DeviceKind::Vbd, config.backend, config.frontend, devid);
        let device_type = if config.cdrom { "cdrom" } else { "disk" };
        let initialising = XenbusState::Initialising.as_str().to_string();
        let backend = [
            ("params", config.params.clone()),
            ("script", config.script.clone()),
            ("frontend-id", config.frontend.to_string()),
            ("online", "1".to_string()),
            (
                "removable",
                if config.cdrom { "1" } else { "0" }.to_string(),
            ),
            ("bootable", "1".to_string()),
            ("state", initialising.clone()),
            ("dev", config.vdev.clone()),
            ("type", "phy".to_string()),
            ("mode", if config.writable { "w" } else { "r" }.to_string()),
            ("device-type", device_type.to_string()),
            (
                "discard-enable",
                if config.discard_enable { "1" } else { "0" }.to_string(),
            ),
            ("specification", "xen".to_string()),
        ];
        let frontend = [
            ("backend-id", config.backend.to_string()),
            ("state", initialising),
            ("virtual-device", devid.to_string()),
            ("device-type", device_type.to_string()),
            ("trusted", "1".to_string()),
        ];
        self.generic_add(&nodes, &backend, &frontend, &[])?;
        Ok(nodes)
    }

    /// Attaches a network interface: what a `vif=[...backend=<be>]` entry
    /// makes libxl write.
    pub fn attach_vif(&self, config: &VifConfig) -> Result<DeviceNodes, SimError> {
        let nodes = DeviceNodes::new(
            DeviceKind::Vif,
            config.backend,
            config.frontend,
            config.devid,
        );
        let initialising = XenbusState::Initialising.as_str().to_string();
        let backend = [
            ("frontend-id", config.frontend.to_string()),
            ("online", "1".to_string()),
            ("state", initialising.clone()),
            ("script", config.script.clone()),
            ("mac", config.mac.clone()),
            ("bridge", config.bridge.clone()),
            ("handle", config.devid.to_string()),
            ("type", "vif".to_string()),
        ];
        let frontend = [
            ("backend-id", config.backend.to_string()),
            ("state", initialising),
            ("handle", config.devid.to_string()),
            ("mac", config.mac.clone()),
            ("trusted", "1".to_string()),
        ];
        let read_only = [("mtu", config.mtu.to_string())];
        self.generic_add(&nodes, &backend, &frontend, &read_only)?;
        Ok(nodes)
    }

    /// Attaches a device of any type the way `libxl__device_generic_add`
    /// does for every kind: the keys libxl always writes (`frontend-id`,
    /// `online = 1`, `state = 1` in the backend; `backend-id`, `state = 1`
    /// in the frontend) plus `backend_entries` and `frontend_entries`.
    pub fn attach_device(
        &self,
        kind: DeviceKind,
        backend: DomId,
        frontend: DomId,
        devid: u32,
        backend_entries: &[(&str, &str)],
        frontend_entries: &[(&str, &str)],
    ) -> Result<DeviceNodes, SimError> {
        let nodes = DeviceNodes::new(kind, backend, frontend, devid);
        let initialising = XenbusState::Initialising.as_str().to_string();
        let mut backend_keys = vec![
            ("frontend-id", frontend.to_string()),
            ("online", "1".to_string()),
            ("state", initialising.clone()),
        ];
        backend_keys.extend(
            backend_entries
                .iter()
                .map(|(key, value)| (*key, value.to_string())),
        );
        let mut frontend_keys = vec![("backend-id", backend.to_string()), ("state", initialising)];
        frontend_keys.extend(
            frontend_entries
                .iter()
                .map(|(key, value)| (*key, value.to_string())),
        );
        self.generic_add(&nodes, &backend_keys, &frontend_keys, &[])?;
        Ok(nodes)
    }

    /// Starts a detach as `libxl__initiate_device_generic_remove` does:
    /// `online = 0` and, unless the backend is already Closed,
    /// `state = 5` (Closing) in the backend directory. The backend is then
    /// expected to close its end and write `state = 6`.
    pub fn begin_detach(&self, nodes: &DeviceNodes) -> Result<(), SimError> {
        self.transaction(|dom0, tx| {
            let state_path = format!("{}/state", nodes.backend);
            let state = match dom0.read(tx, &state_path) {
                Ok(state) => state,
                // No backend left: only the frontend needs cleaning up.
                Err(XsError::Enoent) => return Ok(()),
                Err(error) => return Err(error),
            };
            dom0.write(tx, &format!("{}/online", nodes.backend), "0")?;
            if XenbusState::parse(&state) != Some(XenbusState::Closed) {
                dom0.write(tx, &state_path, XenbusState::Closing.as_str())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Whether the backend reports Closed (or is gone).
    pub fn backend_closed(&self, nodes: &DeviceNodes) -> bool {
        let mut dom0 = self.dom0.clone();
        match dom0.read(TxId::NONE, &format!("{}/state", nodes.backend)) {
            Ok(state) => XenbusState::parse(&state) == Some(XenbusState::Closed),
            Err(_) => true,
        }
    }

    /// Waits up to `timeout` for the backend to reach Closed, by watching
    /// its state node from dom0. The backend must be driven by another
    /// thread meanwhile.
    pub fn wait_backend_closed(
        &self,
        nodes: &DeviceNodes,
        timeout: Duration,
    ) -> Result<(), SimError> {
        let mut watcher = self.dom0.clone();
        let token = format!("detach-{}-{}", nodes.frontend_id, nodes.devid);
        let state_path = format!("{}/state", nodes.backend);
        watcher.watch(&state_path, &token)?;
        let deadline = std::time::Instant::now() + timeout;
        let result = loop {
            if self.backend_closed(nodes) {
                break Ok(());
            }
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            if remaining.is_zero() {
                break Err(SimError::Timeout);
            }
            let _ = self.hypervisor.wait_until(remaining, |state| {
                state.store.take_events_with_token(crate::DOM0, &token)
            });
        };
        watcher.unwatch(&state_path, &token)?;
        self.hypervisor
            .lock()
            .store
            .take_events_with_token(crate::DOM0, &token);
        result
    }

    /// Removes a device's nodes as `libxl__device_destroy` does from dom0:
    /// the frontend, libxl and backend directories, each with any parent
    /// left empty (`libxl__xs_path_cleanup`).
    pub fn finish_detach(&self, nodes: &DeviceNodes) -> Result<(), SimError> {
        self.transaction(|dom0, tx| {
            path_cleanup(dom0, tx, &nodes.frontend)?;
            path_cleanup(dom0, tx, &nodes.libxl)?;
            path_cleanup(dom0, tx, &nodes.backend)
        })?;
        Ok(())
    }

    /// The whole `xl block-detach`/`network-detach`: [`begin_detach`],
    /// then waits up to `timeout` for the backend to reach Closed, then
    /// removes the nodes. Like libxl after its timeout, it removes them
    /// even if the backend never closed. Returns whether the backend
    /// closed. The backend must be driven by another thread meanwhile.
    ///
    /// [`begin_detach`]: Toolstack::begin_detach
    pub fn detach(&self, nodes: &DeviceNodes, timeout: Duration) -> Result<bool, SimError> {
        self.begin_detach(nodes)?;
        let closed = match self.wait_backend_closed(nodes, timeout) {
            Ok(()) => true,
            Err(SimError::Timeout) => {
                log::warn!("{}: backend did not close, removing anyway", nodes.backend);
                false
            }
            Err(error) => return Err(error),
        };
        self.finish_detach(nodes)?;
        Ok(closed)
    }

    /// The devices libxl knows for `frontend_id`, from `/libxl/<fe>/device`.
    pub fn devices(&self, frontend_id: DomId) -> Result<Vec<DeviceNodes>, SimError> {
        let mut dom0 = self.dom0.clone();
        let mut found = Vec::new();
        for kind in [DeviceKind::Vbd, DeviceKind::Vif] {
            let directory = format!("/libxl/{frontend_id}/device/{}", kind.as_str());
            let devids = match dom0.directory(TxId::NONE, &directory) {
                Ok(devids) => devids,
                Err(XsError::Enoent) => continue,
                Err(error) => return Err(error.into()),
            };
            for devid in devids {
                let Ok(number) = devid.parse::<u32>() else {
                    continue;
                };
                let backend_path =
                    dom0.read(TxId::NONE, &format!("{directory}/{devid}/backend"))?;
                let backend_id = backend_path
                    .strip_prefix("/local/domain/")
                    .and_then(|rest| rest.split('/').next())
                    .and_then(|id| id.parse::<DomId>().ok())
                    .ok_or(SimError::Xenstore(XsError::Einval))?;
                found.push(DeviceNodes::new(kind, backend_id, frontend_id, number));
            }
        }
        Ok(found)
    }

    /// Destroys a guest as `xl destroy` does: removes the nodes of every
    /// device recorded under `/libxl/<domid>/device` (without waiting for
    /// backends), destroys the domain in
    /// the hypervisor, and removes `/local/domain/<domid>` and
    /// `/libxl/<domid>`.
    pub fn destroy_domain(&self, domid: DomId) -> Result<(), SimError> {
        // Every kind libxl recorded, not only the ones this module knows.
        let mut dom0 = self.dom0.clone();
        let devices = format!("/libxl/{domid}/device");
        let kinds = match dom0.directory(TxId::NONE, &devices) {
            Ok(kinds) => kinds,
            Err(XsError::Enoent) => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        for kind in kinds {
            let kind_path = format!("{devices}/{kind}");
            for devid in dom0.directory(TxId::NONE, &kind_path)? {
                let libxl = format!("{kind_path}/{devid}");
                let frontend = dom0.read(TxId::NONE, &format!("{libxl}/frontend"));
                let backend = dom0.read(TxId::NONE, &format!("{libxl}/backend"));
                self.transaction(|dom0, tx| {
                    for path in frontend.iter().chain(backend.iter()) {
                        path_cleanup(dom0, tx, path)?;
                    }
                    path_cleanup(dom0, tx, &libxl)
                })?;
            }
        }
        self.hypervisor.destroy_domain(domid)?;
        self.transaction(|dom0, tx| {
            dom0.rm(tx, &format!("/local/domain/{domid}"))?;
            dom0.rm(tx, &format!("/libxl/{domid}"))
        })?;
        Ok(())
    }
}

/// `libxl__xs_rm_checked`: removing a node that is not there is fine.
fn rm_checked(dom0: &mut Domain, tx: TxId, path: &str) -> Result<(), XsError> {
    match dom0.rm(tx, path) {
        Ok(()) | Err(XsError::Enoent) => Ok(()),
        Err(error) => Err(error),
    }
}

/// `libxl__xs_path_cleanup`: removes `path`, then each parent that has
/// become an empty directory with an empty value.
fn path_cleanup(dom0: &mut Domain, tx: TxId, path: &str) -> Result<(), XsError> {
    rm_checked(dom0, tx, path)?;
    let mut current = path.to_string();
    while let Some(index) = current.rfind('/') {
        current.truncate(index);
        if current.is_empty() {
            break;
        }
        let empty_value = matches!(dom0.read(tx, &current), Ok(value) if value.is_empty());
        let no_children =
            matches!(dom0.directory(tx, &current), Ok(children) if children.is_empty());
        if !empty_value || !no_children {
            break;
        }
        dom0.rm(tx, &current)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xvd_numbers_match_libxl() {
        assert_eq!(xvd_devid("xvda"), Some(51712));
        assert_eq!(xvd_devid("xvdb"), Some(51728));
        assert_eq!(xvd_devid("xvdp"), Some(51952));
        assert_eq!(xvd_devid("xvdq"), Some((1 << 28) | (16 << 8)));
        assert_eq!(xvd_devid("sda"), None);
        assert_eq!(xvd_devid("xvd"), None);
    }
}
