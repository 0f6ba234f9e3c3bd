//! Event channels (`xen/include/public/event_channel.h`), 2-level ABI.
//!
//! Semantics follow `xen/common/event_channel.c`:
//!
//! * `EVTCHNOP_alloc_unbound` makes a port that only the named remote
//!   domain may bind.
//! * `EVTCHNOP_bind_interdomain` connects a new local port to it and marks
//!   the local port pending, because notifications sent to the unbound
//!   port were dropped.
//! * `EVTCHNOP_send` on an interdomain port sets the peer port's pending
//!   bit; on an unbound port it is silently dropped.
//! * `EVTCHNOP_close` frees the local port (clearing its pending bit) and
//!   turns the peer's port back into an unbound port for this domain.
//! * A pending port wakes the domain only while unmasked; unmasking a
//!   pending port wakes it then.
//!
//! Port 0 is never allocated; new ports are the lowest free number.

use std::time::Duration;

use xenbus::platform::{DomId, EventChannels, EvtchnError, EvtchnPort};

use crate::{Domain, State};

/// What a port is connected to (`EVTCHNSTAT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortStatus {
    /// `EVTCHNSTAT_closed`: not allocated.
    Closed,
    /// `EVTCHNSTAT_unbound`: allocated, waiting for `remote` to bind it.
    Unbound {
        /// The domain allowed to bind.
        remote: DomId,
    },
    /// `EVTCHNSTAT_interdomain`: connected.
    Interdomain {
        /// The peer domain.
        remote: DomId,
        /// The peer's port.
        remote_port: EvtchnPort,
    },
}

#[derive(Debug, Clone, Copy)]
struct Port {
    status: PortStatus,
    pending: bool,
    masked: bool,
}

impl Port {
    const CLOSED: Port = Port {
        status: PortStatus::Closed,
        pending: false,
        masked: false,
    };
}

/// One domain's ports.
pub(crate) struct PortTable {
    ports: Vec<Port>,
}

impl PortTable {
    pub(crate) fn new(count: u32) -> Self {
        PortTable {
            ports: vec![Port::CLOSED; count.max(2) as usize],
        }
    }

    fn get(&self, port: EvtchnPort) -> Option<&Port> {
        if port == 0 {
            return None;
        }
        self.ports.get(port as usize)
    }

    fn get_mut(&mut self, port: EvtchnPort) -> Option<&mut Port> {
        if port == 0 {
            return None;
        }
        self.ports.get_mut(port as usize)
    }

    /// The lowest closed port, as `get_free_port` returns.
    fn allocate(&mut self, status: PortStatus) -> Result<EvtchnPort, EvtchnError> {
        let index = self
            .ports
            .iter()
            .skip(1)
            .position(|port| port.status == PortStatus::Closed)
            .ok_or(EvtchnError::NoFreePort)?
            + 1;
        self.ports[index] = Port {
            status,
            pending: false,
            masked: false,
        };
        Ok(index as EvtchnPort)
    }
}

impl State {
    fn ports_mut(&mut self, domid: DomId) -> Result<&mut PortTable, EvtchnError> {
        self.domains
            .get_mut(&domid)
            .map(|domain| &mut domain.ports)
            .ok_or(EvtchnError::NoSuchPort)
    }

    /// Sets a port pending; returns whether that should wake its domain.
    fn set_pending(&mut self, domid: DomId, port: EvtchnPort) -> bool {
        match self
            .domains
            .get_mut(&domid)
            .and_then(|domain| domain.ports.get_mut(port))
        {
            Some(port) => {
                let newly = !port.pending;
                port.pending = true;
                newly && !port.masked
            }
            None => false,
        }
    }

    fn alloc_unbound(&mut self, caller: DomId, remote: DomId) -> Result<EvtchnPort, EvtchnError> {
        let remote = State::resolve(caller, remote);
        self.ports_mut(caller)?
            .allocate(PortStatus::Unbound { remote })
    }

    fn bind_interdomain(
        &mut self,
        caller: DomId,
        remote: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, EvtchnError> {
        let remote = State::resolve(caller, remote);
        let remote_status = self
            .domains
            .get(&remote)
            .ok_or(EvtchnError::NoSuchPort)?
            .ports
            .get(remote_port)
            .ok_or(EvtchnError::NoSuchPort)?
            .status;
        if remote_status != (PortStatus::Unbound { remote: caller }) {
            return Err(EvtchnError::NotBindable);
        }
        let local = self.ports_mut(caller)?.allocate(PortStatus::Interdomain {
            remote,
            remote_port,
        })?;
        self.ports_mut(remote)?
            .get_mut(remote_port)
            .expect("checked above")
            .status = PortStatus::Interdomain {
            remote: caller,
            remote_port: local,
        };
        // Events sent to the unbound port were dropped; Xen makes up for
        // them by marking the new local port pending.
        self.set_pending(caller, local);
        Ok(local)
    }

    /// Returns whether a domain must be woken.
    fn send(&mut self, caller: DomId, port: EvtchnPort) -> Result<bool, EvtchnError> {
        let status = self
            .ports_mut(caller)?
            .get(port)
            .ok_or(EvtchnError::NoSuchPort)?
            .status;
        let wake = match status {
            PortStatus::Closed => return Err(EvtchnError::NoSuchPort),
            PortStatus::Unbound { .. } => false,
            PortStatus::Interdomain {
                remote,
                remote_port,
            } => self.set_pending(remote, remote_port),
        };
        if let Some(domain) = self.domains.get_mut(&caller) {
            domain.stats.events_sent += 1;
        }
        Ok(wake)
    }

    fn close(&mut self, caller: DomId, port: EvtchnPort) -> Result<(), EvtchnError> {
        let slot = self
            .ports_mut(caller)?
            .get_mut(port)
            .ok_or(EvtchnError::NoSuchPort)?;
        let status = slot.status;
        if status == PortStatus::Closed {
            return Err(EvtchnError::NoSuchPort);
        }
        *slot = Port::CLOSED;
        if let PortStatus::Interdomain {
            remote,
            remote_port,
        } = status
        {
            if let Some(peer) = self
                .domains
                .get_mut(&remote)
                .and_then(|domain| domain.ports.get_mut(remote_port))
            {
                peer.status = PortStatus::Unbound { remote: caller };
            }
        }
        Ok(())
    }

    /// Closes every port of a dying domain.
    pub(crate) fn close_all_ports(&mut self, domid: DomId) {
        let count = self
            .domains
            .get(&domid)
            .map_or(0, |domain| domain.ports.ports.len());
        for port in 1..count {
            let _ = self.close(domid, port as EvtchnPort);
        }
    }

    /// Takes every pending unmasked port, clearing its pending bit.
    pub(crate) fn take_pending(&mut self, domid: DomId) -> Vec<EvtchnPort> {
        let Some(domain) = self.domains.get_mut(&domid) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        for (index, port) in domain.ports.ports.iter_mut().enumerate() {
            if port.pending && !port.masked {
                port.pending = false;
                taken.push(index as EvtchnPort);
            }
        }
        taken
    }

    fn has_pending(&self, domid: DomId) -> bool {
        self.domains.get(&domid).is_some_and(|domain| {
            domain
                .ports
                .ports
                .iter()
                .any(|port| port.pending && !port.masked)
        })
    }
}

impl Domain {
    /// Allocates a port that `remote` may bind (`EVTCHNOP_alloc_unbound`);
    /// a frontend does this and publishes the port in xenstore.
    pub fn alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, EvtchnError> {
        self.hypervisor.lock().alloc_unbound(self.domid, remote)
    }

    /// Binds a new local port to `remote_port` of `remote`
    /// (`EVTCHNOP_bind_interdomain`). The new port starts pending.
    pub fn bind(&self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, EvtchnError> {
        let result = self
            .hypervisor
            .lock()
            .bind_interdomain(self.domid, remote, remote_port);
        if result.is_ok() {
            self.hypervisor.wake_all();
        }
        result
    }

    /// Notifies the other end of `port` (`EVTCHNOP_send`). Sending on an
    /// unbound port succeeds and does nothing; on a closed or invalid port
    /// it is [`EvtchnError::NoSuchPort`].
    pub fn send(&self, port: EvtchnPort) -> Result<(), EvtchnError> {
        let wake = self.hypervisor.lock().send(self.domid, port)?;
        if wake {
            self.hypervisor.wake_all();
        }
        Ok(())
    }

    /// Closes `port` (`EVTCHNOP_close`); the peer's end becomes unbound.
    pub fn close_port(&self, port: EvtchnPort) -> Result<(), EvtchnError> {
        self.hypervisor.lock().close(self.domid, port)
    }

    /// What `port` is connected to.
    pub fn port_status(&self, port: EvtchnPort) -> PortStatus {
        let state = self.hypervisor.lock();
        state
            .domains
            .get(&self.domid)
            .and_then(|domain| domain.ports.get(port))
            .map_or(PortStatus::Closed, |port| port.status)
    }

    /// Sets the mask bit of `port`: it still becomes pending but does not
    /// wake the domain.
    pub fn mask(&self, port: EvtchnPort) {
        let mut state = self.hypervisor.lock();
        if let Some(port) = state
            .domains
            .get_mut(&self.domid)
            .and_then(|domain| domain.ports.get_mut(port))
        {
            port.masked = true;
        }
    }

    /// Clears the mask bit of `port`; if it is pending, the domain is woken
    /// now (`EVTCHNOP_unmask`).
    pub fn unmask_port(&self, port: EvtchnPort) {
        let wake = {
            let mut state = self.hypervisor.lock();
            match state
                .domains
                .get_mut(&self.domid)
                .and_then(|domain| domain.ports.get_mut(port))
            {
                Some(port) => {
                    let was_masked = std::mem::replace(&mut port.masked, false);
                    was_masked && port.pending
                }
                None => false,
            }
        };
        if wake {
            self.hypervisor.wake_all();
        }
    }

    /// Whether `port`'s mask bit is set.
    pub fn is_masked(&self, port: EvtchnPort) -> bool {
        let state = self.hypervisor.lock();
        state
            .domains
            .get(&self.domid)
            .and_then(|domain| domain.ports.get(port))
            .is_some_and(|port| port.masked)
    }

    /// Whether `port`'s pending bit is set (masked or not).
    pub fn is_pending(&self, port: EvtchnPort) -> bool {
        let state = self.hypervisor.lock();
        state
            .domains
            .get(&self.domid)
            .and_then(|domain| domain.ports.get(port))
            .is_some_and(|port| port.pending)
    }

    /// Clears `port`'s pending bit; returns whether it was set.
    pub fn clear_pending(&self, port: EvtchnPort) -> bool {
        let mut state = self.hypervisor.lock();
        state
            .domains
            .get_mut(&self.domid)
            .and_then(|domain| domain.ports.get_mut(port))
            .is_some_and(|port| std::mem::replace(&mut port.pending, false))
    }

    /// Takes the pending, unmasked ports without blocking, clearing their
    /// pending bits, lowest port first. Masked pending ports stay pending.
    pub fn poll_ports(&self) -> Vec<EvtchnPort> {
        self.hypervisor.lock().take_pending(self.domid)
    }

    /// Blocks until at least one unmasked port is pending or `timeout`
    /// passes, then takes them as [`Domain::poll_ports`] does. Empty means
    /// the timeout passed.
    pub fn wait_ports(&self, timeout: Duration) -> Vec<EvtchnPort> {
        let domid = self.domid;
        self.hypervisor
            .wait_until(timeout, |state| {
                state.has_pending(domid).then(|| state.take_pending(domid))
            })
            .unwrap_or_default()
    }
}

impl EventChannels for Domain {
    fn bind_interdomain(
        &mut self,
        remote: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, EvtchnError> {
        self.bind(remote, remote_port)
    }

    fn notify(&mut self, port: EvtchnPort) {
        if let Err(error) = self.send(port) {
            log::warn!("d{}: notify on port {port} failed: {error:?}", self.domid);
        }
    }

    fn unmask(&mut self, port: EvtchnPort) {
        self.unmask_port(port);
    }

    fn close(&mut self, port: EvtchnPort) {
        if let Err(error) = self.close_port(port) {
            log::warn!("d{}: close of port {port} failed: {error:?}", self.domid);
        }
    }
}
