//! An Ethernet learning switch between the vifs of this domain and an
//! uplink port.
//!
//! The switch only decides: [`Switch::forward`] learns the source MAC of a
//! frame on its ingress port and says where the frame goes. Moving the
//! frames is the caller's business. Time is passed in; the switch has no
//! clock. The MAC table is bounded: when it is full, stale entries are
//! evicted first, then the oldest, so a guest sending from random source
//! MACs can cost other guests flooding but never memory.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use crate::frame::MacAddress;

/// A switch port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u32);

/// Counters of one port, from the port's point of view: `received` is what
/// came into the switch from the port, `sent` what the switch gave it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames that entered the switch on this port.
    pub received_packets: u64,
    /// Bytes that entered the switch on this port.
    pub received_bytes: u64,
    /// Frames the switch handed to this port.
    pub sent_packets: u64,
    /// Bytes the switch handed to this port.
    pub sent_bytes: u64,
    /// Frames for this port dropped for lack of room (queue full, no
    /// receive buffers).
    pub drops: u64,
    /// Frames from or for this port dropped as malformed.
    pub errors: u64,
}

/// Where a frame goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// To one known port.
    Unicast(PortId),
    /// To every port but the ingress one (unknown unicast, broadcast,
    /// multicast). The list is in port order.
    Flood(Vec<PortId>),
    /// Nowhere: the destination lives behind the ingress port, or the
    /// frame is not forwardable.
    Discard,
}

/// Settings of the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Maximum number of learnt MAC addresses.
    pub max_entries: usize,
    /// How long an address stays learnt without traffic from it.
    pub ageing_time: Duration,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self {
            max_entries: 4096,
            // IEEE 802.1D's default ageing time.
            ageing_time: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    last_seen: Duration,
}

/// The switch.
#[derive(Debug)]
pub struct Switch {
    config: SwitchConfig,
    table: BTreeMap<MacAddress, Entry>,
    /// Addresses pinned to a port: never aged, never moved by learning.
    pinned: BTreeMap<MacAddress, PortId>,
    ports: BTreeMap<PortId, PortCounters>,
}

impl Switch {
    /// An empty switch with no ports.
    pub fn new(config: SwitchConfig) -> Self {
        Self {
            config,
            table: BTreeMap::new(),
            pinned: BTreeMap::new(),
            ports: BTreeMap::new(),
        }
    }

    /// Pins `mac` to `port` (a vif's address from the toolstack): frames
    /// for it go there without flooding, and no other port can take it over
    /// by sending from it.
    pub fn pin(&mut self, mac: MacAddress, port: PortId) {
        self.table.remove(&mac);
        self.pinned.insert(mac, port);
    }

    /// Removes every pin of `port`.
    pub fn unpin_port(&mut self, port: PortId) {
        self.pinned.retain(|_, pinned| *pinned != port);
    }

    /// Adds a port (with zeroed counters); adding an existing port keeps
    /// its counters.
    pub fn add_port(&mut self, port: PortId) {
        self.ports.entry(port).or_default();
    }

    /// Removes a port and forgets every address learnt on it.
    pub fn remove_port(&mut self, port: PortId) {
        self.ports.remove(&port);
        self.unpin_port(port);
        self.table.retain(|_, entry| entry.port != port);
    }

    /// Forgets every address learnt on `port`, keeping the port and its
    /// counters (a vif whose frontend disconnected).
    pub fn forget_port_addresses(&mut self, port: PortId) {
        self.table.retain(|_, entry| entry.port != port);
    }

    /// The ports, in order.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.keys().copied()
    }

    /// Counters of a port.
    pub fn counters(&self, port: PortId) -> Option<PortCounters> {
        self.ports.get(&port).copied()
    }

    /// Mutable counters of a port, for the data path to account to.
    pub fn counters_mut(&mut self, port: PortId) -> Option<&mut PortCounters> {
        self.ports.get_mut(&port)
    }

    /// Number of learnt addresses.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// The port `mac` was learnt on, if it is learnt and not aged out.
    pub fn lookup(&self, mac: &MacAddress, now: Duration) -> Option<PortId> {
        if let Some(port) = self.pinned.get(mac) {
            return Some(*port);
        }
        self.table
            .get(mac)
            .filter(|entry| !self.is_stale(entry, now))
            .map(|entry| entry.port)
    }

    fn is_stale(&self, entry: &Entry, now: Duration) -> bool {
        now.saturating_sub(entry.last_seen) >= self.config.ageing_time
    }

    /// Forgets addresses not seen for the ageing time. Bounded by the table
    /// size.
    pub fn age(&mut self, now: Duration) {
        let ageing_time = self.config.ageing_time;
        self.table
            .retain(|_, entry| now.saturating_sub(entry.last_seen) < ageing_time);
    }

    fn learn(&mut self, source: MacAddress, port: PortId, now: Duration) {
        // Group addresses are never sources; learning them would hijack
        // broadcast.
        if source[0] & 1 != 0 || self.pinned.contains_key(&source) {
            return;
        }
        if let Some(entry) = self.table.get_mut(&source) {
            entry.port = port;
            entry.last_seen = now;
            return;
        }
        if self.table.len() >= self.config.max_entries {
            self.age(now);
        }
        if self.table.len() >= self.config.max_entries {
            let oldest = self
                .table
                .iter()
                .min_by_key(|(_, entry)| entry.last_seen)
                .map(|(mac, _)| *mac);
            if let Some(mac) = oldest {
                self.table.remove(&mac);
            }
        }
        if self.config.max_entries > 0 {
            self.table.insert(
                source,
                Entry {
                    port,
                    last_seen: now,
                },
            );
        }
    }

    /// Learns the frame's source on `ingress`, counts it as received there,
    /// and decides where it goes. Frames shorter than two MAC addresses, or
    /// from a port the switch does not have, are discarded (the former
    /// counted as an error).
    pub fn forward(&mut self, ingress: PortId, frame: &[u8], now: Duration) -> Forward {
        let Some(counters) = self.ports.get_mut(&ingress) else {
            return Forward::Discard;
        };
        if frame.len() < 12 {
            counters.errors += 1;
            return Forward::Discard;
        }
        counters.received_packets += 1;
        counters.received_bytes += frame.len() as u64;
        let mut destination = [0u8; 6];
        destination.copy_from_slice(&frame[0..6]);
        let mut source = [0u8; 6];
        source.copy_from_slice(&frame[6..12]);
        self.learn(source, ingress, now);
        if destination[0] & 1 == 0 {
            if let Some(port) = self.lookup(&destination, now) {
                if port == ingress {
                    return Forward::Discard;
                }
                return Forward::Unicast(port);
            }
        }
        let ports: Vec<PortId> = self
            .ports
            .keys()
            .copied()
            .filter(|p| *p != ingress)
            .collect();
        if ports.is_empty() {
            Forward::Discard
        } else {
            Forward::Flood(ports)
        }
    }

    /// Counts a frame handed to `port`.
    pub fn count_sent(&mut self, port: PortId, bytes: usize) {
        if let Some(counters) = self.ports.get_mut(&port) {
            counters.sent_packets += 1;
            counters.sent_bytes += bytes as u64;
        }
    }

    /// Counts a frame for `port` dropped for lack of room.
    pub fn count_drop(&mut self, port: PortId) {
        if let Some(counters) = self.ports.get_mut(&port) {
            counters.drops += 1;
        }
    }

    /// Counts a malformed frame from or for `port`.
    pub fn count_error(&mut self, port: PortId) {
        if let Some(counters) = self.ports.get_mut(&port) {
            counters.errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const A: PortId = PortId(1);
    const B: PortId = PortId(2);
    const C: PortId = PortId(3);

    fn mac(last: u8) -> MacAddress {
        [0x02, 0, 0, 0, 0, last]
    }

    fn frame(destination: MacAddress, source: MacAddress) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&destination);
        data.extend_from_slice(&source);
        data.extend_from_slice(&[0x08, 0x00]);
        data.resize(60, 0);
        data
    }

    fn switch() -> Switch {
        let mut switch = Switch::new(SwitchConfig {
            max_entries: 3,
            ageing_time: Duration::from_secs(10),
        });
        for port in [A, B, C] {
            switch.add_port(port);
        }
        switch
    }

    #[test]
    fn unknown_unicast_floods_then_learnt_address_is_unicast() {
        let mut switch = switch();
        let t = Duration::from_secs(1);
        assert_eq!(
            switch.forward(A, &frame(mac(2), mac(1)), t),
            Forward::Flood(vec![B, C])
        );
        assert_eq!(
            switch.forward(B, &frame(mac(1), mac(2)), t),
            Forward::Unicast(A)
        );
        assert_eq!(
            switch.forward(A, &frame(mac(2), mac(1)), t),
            Forward::Unicast(B)
        );
        let counters = switch.counters(A).unwrap();
        assert_eq!(counters.received_packets, 2);
        assert_eq!(counters.received_bytes, 120);
    }

    #[test]
    fn broadcast_and_multicast_flood_and_are_never_learnt() {
        let mut switch = switch();
        let t = Duration::ZERO;
        let broadcast = [0xff; 6];
        assert_eq!(
            switch.forward(C, &frame(broadcast, mac(3)), t),
            Forward::Flood(vec![A, B])
        );
        let multicast = [0x01, 0x00, 0x5e, 0, 0, 1];
        switch.forward(A, &frame(multicast, mac(1)), t);
        // A multicast source is not learnt, so it cannot attract traffic.
        switch.forward(A, &frame(mac(9), broadcast), t);
        assert_eq!(switch.lookup(&broadcast, t), None);
        assert_eq!(
            switch.forward(B, &frame(multicast, mac(2)), t),
            Forward::Flood(vec![A, C])
        );
    }

    #[test]
    fn no_reflection_to_the_source_port() {
        let mut switch = switch();
        let t = Duration::ZERO;
        switch.forward(A, &frame(mac(9), mac(1)), t);
        switch.forward(A, &frame(mac(9), mac(2)), t);
        assert_eq!(
            switch.forward(A, &frame(mac(2), mac(1)), t),
            Forward::Discard
        );
    }

    #[test]
    fn addresses_age_out_and_move() {
        let mut switch = switch();
        switch.forward(A, &frame(mac(9), mac(1)), Duration::from_secs(0));
        assert_eq!(switch.lookup(&mac(1), Duration::from_secs(9)), Some(A));
        assert_eq!(switch.lookup(&mac(1), Duration::from_secs(10)), None);
        switch.forward(B, &frame(mac(9), mac(1)), Duration::from_secs(5));
        assert_eq!(switch.lookup(&mac(1), Duration::from_secs(6)), Some(B));
        switch.age(Duration::from_secs(100));
        assert_eq!(switch.table_len(), 0);
    }

    #[test]
    fn table_is_bounded_and_evicts_the_oldest() {
        let mut switch = switch();
        for (second, last) in (1..=10u8).enumerate() {
            switch.forward(
                A,
                &frame(mac(99), mac(last)),
                Duration::from_secs(second as u64),
            );
            assert!(switch.table_len() <= 3);
        }
        assert_eq!(switch.lookup(&mac(10), Duration::from_secs(9)), Some(A));
        assert_eq!(switch.lookup(&mac(1), Duration::from_secs(9)), None);
    }

    #[test]
    fn pinned_addresses_neither_flood_nor_move() {
        let mut switch = switch();
        switch.pin(mac(2), B);
        let t = Duration::ZERO;
        assert_eq!(
            switch.forward(A, &frame(mac(2), mac(1)), t),
            Forward::Unicast(B)
        );
        // C sending from B's address does not move it.
        switch.forward(C, &frame(mac(9), mac(2)), t);
        assert_eq!(switch.lookup(&mac(2), Duration::from_secs(1000)), Some(B));
        switch.unpin_port(B);
        assert_eq!(switch.lookup(&mac(2), t), None);
    }

    #[test]
    fn removing_a_port_forgets_its_addresses_and_short_frames_are_errors() {
        let mut switch = switch();
        switch.forward(B, &frame(mac(9), mac(2)), Duration::ZERO);
        switch.remove_port(B);
        assert_eq!(switch.lookup(&mac(2), Duration::ZERO), None);
        assert_eq!(
            switch.forward(A, &frame(mac(2), mac(1)), Duration::ZERO),
            Forward::Flood(vec![C])
        );
        assert_eq!(
            switch.forward(B, &frame(mac(2), mac(1)), Duration::ZERO),
            Forward::Discard
        );
        assert_eq!(
            switch.forward(A, &[0; 11], Duration::ZERO),
            Forward::Discard
        );
        assert_eq!(switch.counters(A).unwrap().errors, 1);
    }
}
