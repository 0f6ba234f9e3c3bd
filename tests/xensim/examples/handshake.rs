//! A split device end to end on the simulated hypervisor: the toolstack
//! creates the device, a backend in a driver domain and a frontend in a
//! guest go through the xenbus handshake to Connected on both sides,
//! exchange requests over a shared ring with a grant map and an event
//! channel, and close when the toolstack detaches the device.
//!
//! The device type is a demonstration one, `echo`: each 16-byte request
//! (`id`, `value`, both little-endian `u64`) is answered by a response with
//! the same `id` and `value * 2`. Real devices differ only in what the ring
//! carries; `blkback` and `netback` have the real thing.
//!
//! Both ends run in one thread, taking turns, so the run is deterministic
//! and cannot hang: each turn takes whatever events and watch events are
//! queued for that domain without blocking (a real driver would block in
//! [`Domain::wait_activity`]).
//!
//! Run it with `cargo run -p xensim --example handshake`.

use std::rc::Rc;

use xen_ring::{BackRing, FrontRing};
use xenbus::backend::{Action, BackendDevice, BackendDirectory};
use xenbus::platform::{EventChannels, GrantMap, TxId, Xenstore, XsError};
use xenbus::{value, EvtchnPort, GrantRef, XenbusState};
use xensim::{DeviceKind, DeviceNodes, Domain, Hypervisor, Mapping, Page};

/// Bytes per ring slot: the larger of request and response.
const SLOT_SIZE: usize = 16;
/// How many turns each side gets before the run is declared stuck.
const MAX_TURNS: usize = 64;

/// What a finished run saw, for the test that runs this example.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The backend state once the frontend reported Connected.
    pub backend_connected: Option<XenbusState>,
    /// The frontend state at the same moment.
    pub frontend_connected: Option<XenbusState>,
    /// `(id, value)` of every response the frontend received.
    pub responses: Vec<(u64, u64)>,
    /// Both states after the detach.
    pub final_states: Option<(XenbusState, XenbusState)>,
    /// Whether the frontend could revoke its ring grant at the end, that is
    /// whether the backend unmapped it.
    pub ring_grant_revoked: bool,
}

fn encode(id: u64, value: u64) -> [u8; SLOT_SIZE] {
    let mut slot = [0; SLOT_SIZE];
    slot[..8].copy_from_slice(&id.to_le_bytes());
    slot[8..].copy_from_slice(&value.to_le_bytes());
    slot
}

fn decode(slot: &[u8; SLOT_SIZE]) -> (u64, u64) {
    let mut id = [0; 8];
    let mut value = [0; 8];
    id.copy_from_slice(&slot[..8]);
    value.copy_from_slice(&slot[8..]);
    (u64::from_le_bytes(id), u64::from_le_bytes(value))
}

fn read_state(xs: &mut Domain, path: &str) -> Option<XenbusState> {
    xs.read(TxId::NONE, path)
        .ok()
        .and_then(|value| XenbusState::parse(&value))
}

/// The backend's connected datapath for one device.
struct Datapath {
    ring: BackRing<Rc<Mapping>>,
    mapping: Rc<Mapping>,
    port: EvtchnPort,
}

impl Datapath {
    /// Unbinds the event channel and unmaps the ring.
    fn tear_down(self, xs: &mut Domain) {
        xs.close(self.port);
        drop(self.ring);
        match Rc::try_unwrap(self.mapping) {
            Ok(mapping) => xs.unmap(mapping),
            Err(_) => unreachable!("the ring held the only other reference"),
        }
    }
}

/// The driver domain: one `echo` backend engine.
struct Backend {
    xs: Domain,
    directory: BackendDirectory,
    device: Option<BackendDevice>,
    datapath: Option<Datapath>,
}

impl Backend {
    fn new(domain: Domain) -> Result<Self, String> {
        let mut xs = domain;
        let directory = BackendDirectory::new("echo");
        directory
            .watch(&mut xs, "echo-backends")
            .map_err(|error| format!("watch backend directory: {error:?}"))?;
        Ok(Backend {
            xs,
            directory,
            device: None,
            datapath: None,
        })
    }

    /// One turn: handle watch events, then ring traffic.
    fn turn(&mut self) -> Result<(), String> {
        let activity = self.xs.poll_activity();
        for event in activity.watches {
            self.on_watch(&event.path)?;
        }
        if let Some(datapath) = &self.datapath {
            if activity.ports.contains(&datapath.port) {
                self.serve()?;
            }
        }
        Ok(())
    }

    fn on_watch(&mut self, path: &str) -> Result<(), String> {
        if let Some(device) = &mut self.device {
            if device.is_relevant(path) {
                let action = device.on_watch(&mut self.xs, path);
                return self.act(action);
            }
        }
        // A device the toolstack just created?
        let Ok(Some(address)) = self.directory.recognise(path) else {
            return Ok(());
        };
        if self.device.is_some() {
            return Ok(());
        }
        let mut device = BackendDevice::new(&self.directory, address);
        if device.probe(&mut self.xs).is_err() {
            return Ok(());
        }
        let token = device.backend_path().to_string();
        device
            .start(&mut self.xs, &[("feature-echo", "1")], &token)
            .map_err(|error| format!("start: {error:?}"))?;
        self.device = Some(device);
        Ok(())
    }

    /// Does what the handshake helper asks until it has nothing more.
    fn act(&mut self, mut action: Action) -> Result<(), String> {
        loop {
            let device = self.device.as_mut().ok_or("no device")?;
            action = match action {
                Action::None => return Ok(()),
                Action::Remove => {
                    self.device = None;
                    return Ok(());
                }
                Action::Connect => {
                    let ring_ref =
                        device.read_frontend(&mut self.xs, "ring-ref", value::parse_grant_ref);
                    let port = device.read_frontend(
                        &mut self.xs,
                        "event-channel",
                        value::parse_evtchn_port,
                    );
                    match (ring_ref, port) {
                        (Ok(ring_ref), Ok(port)) => {
                            match connect(&mut self.xs, device.frontend_id(), ring_ref, port) {
                                Ok(datapath) => {
                                    self.datapath = Some(datapath);
                                    device.connected(&mut self.xs)
                                }
                                Err(reason) => device.fail(&mut self.xs, &reason),
                            }
                        }
                        (Err(error), _) | (_, Err(error)) => {
                            device.fail(&mut self.xs, &format!("{error}"))
                        }
                    }
                }
                Action::Disconnect => {
                    if let Some(datapath) = self.datapath.take() {
                        datapath.tear_down(&mut self.xs);
                    }
                    device.disconnected(&mut self.xs)
                }
            };
        }
    }

    /// Answers every queued request, then notifies if the frontend asked.
    fn serve(&mut self) -> Result<(), String> {
        let datapath = self.datapath.as_mut().ok_or("not connected")?;
        loop {
            let mut slot = [0; SLOT_SIZE];
            // Each request is copied out of the shared page exactly once.
            while datapath
                .ring
                .next_request(&mut slot)
                .map_err(|error| format!("hostile ring: {error:?}"))?
            {
                let (id, value) = decode(&slot);
                datapath
                    .ring
                    .push_response(&encode(id, value.wrapping_mul(2)))
                    .map_err(|error| format!("{error:?}"))?;
            }
            if datapath.ring.push_responses_and_check_notify() {
                self.xs.notify(datapath.port);
            }
            if !datapath
                .ring
                .final_check_for_requests()
                .map_err(|error| format!("hostile ring: {error:?}"))?
            {
                return Ok(());
            }
        }
    }
}

/// Maps the frontend's ring and binds its event channel.
fn connect(
    xs: &mut Domain,
    frontend_id: u16,
    ring_ref: GrantRef,
    port: EvtchnPort,
) -> Result<Datapath, String> {
    let mapping = xs
        .map(frontend_id, &[ring_ref], true)
        .map_err(|error| format!("map ring-ref {ring_ref}: {error:?}"))?;
    let mapping = Rc::new(mapping);
    let ring = BackRing::new(Rc::clone(&mapping), SLOT_SIZE);
    let bound = xs.bind_interdomain(frontend_id, port);
    match (ring, bound) {
        (Ok(ring), Ok(local)) => Ok(Datapath {
            ring,
            mapping,
            port: local,
        }),
        (ring, bound) => {
            if let Ok(local) = bound {
                xs.close(local);
            }
            drop(ring);
            if let Ok(mapping) = Rc::try_unwrap(mapping) {
                xs.unmap(mapping);
            }
            Err(format!("connect ring-ref {ring_ref} port {port}: failed"))
        }
    }
}

/// The guest: a minimal `echo` frontend, shaped like Linux's frontends.
struct Frontend {
    xs: Domain,
    nodes: DeviceNodes,
    state: XenbusState,
    ring: Option<(FrontRing<Page>, GrantRef, EvtchnPort)>,
    next_id: u64,
    responses: Vec<(u64, u64)>,
}

impl Frontend {
    fn new(domain: Domain, nodes: DeviceNodes) -> Result<Self, String> {
        let mut xs = domain;
        // Where the backend is comes from our own directory, which the
        // toolstack wrote; its state is watched from there on.
        let backend = xs
            .read(TxId::NONE, &format!("{}/backend", nodes.frontend))
            .map_err(|error| format!("read backend: {error:?}"))?;
        xs.watch(&format!("{backend}/state"), "echo-frontend")
            .map_err(|error| format!("watch: {error:?}"))?;
        Ok(Frontend {
            xs,
            nodes,
            state: XenbusState::Initialising,
            ring: None,
            next_id: 1,
            responses: Vec::new(),
        })
    }

    fn set_state(&mut self, state: XenbusState) -> Result<(), String> {
        self.xs
            .write(
                TxId::NONE,
                &format!("{}/state", self.nodes.frontend),
                state.as_str(),
            )
            .map_err(|error| format!("write state: {error:?}"))?;
        self.state = state;
        Ok(())
    }

    fn turn(&mut self) -> Result<(), String> {
        let activity = self.xs.poll_activity();
        if !activity.watches.is_empty() {
            let backend = read_state(&mut self.xs, &format!("{}/state", self.nodes.backend));
            self.on_backend_state(backend)?;
        }
        if let Some((ring, _, _)) = &mut self.ring {
            let mut slot = [0; SLOT_SIZE];
            loop {
                while ring
                    .next_response(&mut slot)
                    .map_err(|error| format!("hostile ring: {error:?}"))?
                {
                    self.responses.push(decode(&slot));
                }
                if !ring
                    .final_check_for_responses()
                    .map_err(|error| format!("hostile ring: {error:?}"))?
                {
                    break;
                }
            }
        }
        Ok(())
    }

    fn on_backend_state(&mut self, backend: Option<XenbusState>) -> Result<(), String> {
        match (backend, self.state) {
            (Some(XenbusState::InitWait), XenbusState::Initialising) => self.publish_ring(),
            (Some(XenbusState::Connected), XenbusState::Initialised) => {
                self.set_state(XenbusState::Connected)
            }
            (Some(XenbusState::Closing), state) if state != XenbusState::Closed => {
                self.set_state(XenbusState::Closed)
            }
            _ => Ok(()),
        }
    }

    /// Allocates and grants the ring, allocates the event channel, and
    /// publishes both with `Initialised` in one transaction.
    fn publish_ring(&mut self) -> Result<(), String> {
        let backend_id = self.nodes.backend_id;
        let (gfn, page) = self.xs.alloc_page();
        let ring = FrontRing::init(page, SLOT_SIZE).map_err(|error| format!("{error:?}"))?;
        let ring_ref = self
            .xs
            .grant_access(backend_id, gfn, false)
            .map_err(|error| format!("grant: {error:?}"))?;
        let port = self
            .xs
            .alloc_unbound(backend_id)
            .map_err(|error| format!("alloc_unbound: {error:?}"))?;
        let directory = self.nodes.frontend.clone();
        loop {
            let tx = self.xs.transaction_start().map_err(|e| format!("{e:?}"))?;
            let written = [
                ("ring-ref", ring_ref.to_string()),
                ("event-channel", port.to_string()),
                ("state", XenbusState::Initialised.as_str().to_string()),
            ]
            .iter()
            .try_for_each(|(key, value)| self.xs.write(tx, &format!("{directory}/{key}"), value));
            if let Err(error) = written {
                let _ = self.xs.transaction_end(tx, false);
                return Err(format!("publish: {error:?}"));
            }
            match self.xs.transaction_end(tx, true) {
                Ok(()) => break,
                Err(XsError::Eagain) => continue,
                Err(error) => return Err(format!("commit: {error:?}")),
            }
        }
        self.state = XenbusState::Initialised;
        self.ring = Some((ring, ring_ref, port));
        Ok(())
    }

    fn send(&mut self, value: u64) -> Result<(), String> {
        let (ring, _, port) = self.ring.as_mut().ok_or("no ring")?;
        ring.push_request(&encode(self.next_id, value))
            .map_err(|error| format!("{error:?}"))?;
        self.next_id += 1;
        if ring.push_requests_and_check_notify() {
            let port = *port;
            self.xs.send(port).map_err(|error| format!("{error:?}"))?;
        }
        Ok(())
    }
}

/// Runs both sides until `done` holds, one turn each at a time.
fn run_until(
    backend: &mut Backend,
    frontend: &mut Frontend,
    what: &str,
    done: impl Fn(&mut Backend, &mut Frontend) -> bool,
) -> Result<(), String> {
    for _ in 0..MAX_TURNS {
        if done(backend, frontend) {
            return Ok(());
        }
        backend.turn()?;
        frontend.turn()?;
    }
    Err(format!("stuck waiting for {what}"))
}

/// The whole scenario.
pub fn run() -> Result<Outcome, String> {
    let xen = Hypervisor::new();
    let driver = xen.create_domain("echo-driver");
    let guest = xen.create_domain("guest");
    let toolstack = xen.toolstack();
    let mut outcome = Outcome::default();

    let mut backend = Backend::new(driver.clone())?;
    let nodes = toolstack
        .attach_device(
            DeviceKind::Other("echo"),
            driver.domid(),
            guest.domid(),
            0,
            &[],
            &[],
        )
        .map_err(|error| format!("attach: {error:?}"))?;
    let mut frontend = Frontend::new(guest.clone(), nodes.clone())?;

    run_until(&mut backend, &mut frontend, "Connected", |_, frontend| {
        frontend.state == XenbusState::Connected
    })?;
    let mut dom0 = xen.dom0();
    outcome.backend_connected = read_state(&mut dom0, &format!("{}/state", nodes.backend));
    outcome.frontend_connected = read_state(&mut dom0, &format!("{}/state", nodes.frontend));

    for value in [1, 20, 300] {
        frontend.send(value)?;
    }
    run_until(&mut backend, &mut frontend, "responses", |_, frontend| {
        frontend.responses.len() == 3
    })?;
    outcome.responses = frontend.responses.clone();

    // `xl block-detach`-style removal: online=0, state=Closing; the backend
    // tears down, the frontend closes, the backend reaches Closed.
    toolstack
        .begin_detach(&nodes)
        .map_err(|error| format!("detach: {error:?}"))?;
    run_until(&mut backend, &mut frontend, "Closed", |_, _| {
        toolstack.backend_closed(&nodes)
    })?;
    outcome.final_states = read_state(&mut dom0, &format!("{}/state", nodes.backend))
        .zip(read_state(&mut dom0, &format!("{}/state", nodes.frontend)));
    if let Some((_, ring_ref, port)) = frontend.ring.take() {
        outcome.ring_grant_revoked = guest.end_access(ring_ref).is_ok();
        let _ = guest.close_port(port);
    }
    toolstack
        .finish_detach(&nodes)
        .map_err(|error| format!("finish detach: {error:?}"))?;
    Ok(outcome)
}

fn main() {
    match run() {
        Ok(outcome) => {
            println!(
                "connected: backend {:?}, frontend {:?}",
                outcome.backend_connected, outcome.frontend_connected
            );
            for (id, value) in &outcome.responses {
                println!("response {id}: {value}");
            }
            println!("after detach: {:?}", outcome.final_states);
            println!("ring grant revoked: {}", outcome.ring_grant_revoked);
        }
        Err(error) => {
            eprintln!("handshake failed: {error}");
            std::process::exit(1);
        }
    }
}
