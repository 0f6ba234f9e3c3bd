//! Console lines for the operator: which vifs connected, with what, and
//! which were dropped and why.
//!
//! The engine logs attachment, removal and protocol violations itself as
//! they happen. What it does not say is when a handshake completes, what
//! the frontend negotiated, and what a vif carried before it went away.
//! [`VifLog`] compares successive [`VifStatus`] snapshots and says that.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use netback::{FrontendFeatures, PortCounters, VifStatus};

/// What was last seen of one vif.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    connected: bool,
    connects: u64,
    last_error: Option<String>,
    counters: PortCounters,
}

/// The last snapshot, keyed by (frontend domid, handle).
#[derive(Debug, Default)]
pub struct VifLog {
    seen: BTreeMap<(u16, u32), Seen>,
}

impl VifLog {
    /// Lines describing what changed since the last call, in vif order.
    pub fn update(&mut self, vifs: &[VifStatus]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut current = BTreeMap::new();
        for status in vifs {
            let key = (status.address.frontend_id, status.address.devid);
            let name = format!("vif {}/{}", key.0, key.1);
            let now = Seen {
                connected: status.connected,
                connects: status.counters.connects,
                last_error: status.last_error.clone(),
                counters: status.port_counters,
            };
            let before = self.seen.get(&key);
            let (was_connected, connects_before, error_before) = match before {
                Some(seen) => (seen.connected, seen.connects, seen.last_error.as_deref()),
                None => (false, 0, None),
            };
            if now.connected && (!was_connected || now.connects != connects_before) {
                lines.push(format!(
                    "{name}: connected{}{}",
                    status
                        .mac
                        .map(|mac| format!(", mac {}", mac_text(&mac)))
                        .unwrap_or_default(),
                    status
                        .features
                        .map(|features| format!(", {}", features_text(&features)))
                        .unwrap_or_default()
                ));
            }
            let new_error = now
                .last_error
                .as_deref()
                .filter(|error| Some(*error) != error_before || (was_connected && !now.connected));
            if !now.connected && (was_connected || new_error.is_some()) {
                lines.push(match new_error {
                    Some(error) => format!("{name}: not connected: {error}"),
                    None => format!("{name}: disconnected by its frontend"),
                });
            }
            current.insert(key, now);
        }
        for (key, seen) in &self.seen {
            if !current.contains_key(key) {
                lines.push(format!(
                    "vif {}/{}: gone; it sent {} packets ({} bytes) and received {} ({} bytes)",
                    key.0,
                    key.1,
                    seen.counters.received_packets,
                    seen.counters.received_bytes,
                    seen.counters.sent_packets,
                    seen.counters.sent_bytes
                ));
            }
        }
        self.seen = current;
        lines
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|byte| format!("{byte:02x}")).collect();
    parts.join(":")
}

/// The negotiated features, as the frontend's xenstore keys name them.
fn features_text(features: &FrontendFeatures) -> String {
    let mut words = Vec::from([format!("{} queue(s)", features.queues)]);
    let flags = [
        (features.split_event_channels, "split event channels"),
        (features.sg, "sg"),
        (features.gso_tcpv4, "gso-tcpv4"),
        (features.gso_tcpv6, "gso-tcpv6"),
        (features.checksum_ipv4, "ipv4 checksum offload"),
        (features.checksum_ipv6, "ipv6 checksum offload"),
        (features.rx_notify, "rx-notify"),
    ];
    words.extend(
        flags
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, word)| String::from(*word)),
    );
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use netback::{DeviceAddress, PortId, VifCounters};

    fn status(frontend_id: u16, connected: bool) -> VifStatus {
        VifStatus {
            address: DeviceAddress {
                frontend_id,
                devid: 0,
            },
            port: PortId(1),
            mac: Some([0x00, 0x16, 0x3e, 0x70, 0x00, 0x11]),
            connected,
            features: connected.then(|| FrontendFeatures {
                sg: true,
                rx_notify: true,
                queues: 1,
                ..FrontendFeatures::default()
            }),
            port_counters: PortCounters::default(),
            counters: VifCounters {
                connects: u64::from(connected),
                ..VifCounters::default()
            },
            last_error: None,
        }
    }

    #[test]
    fn a_connect_is_reported_once_with_what_was_negotiated() {
        let mut log = VifLog::default();
        assert!(log.update(&[status(3, false)]).is_empty());
        let lines = log.update(&[status(3, true)]);
        assert_eq!(
            lines,
            ["vif 3/0: connected, mac 00:16:3e:70:00:11, 1 queue(s), sg, rx-notify"]
        );
        assert!(log.update(&[status(3, true)]).is_empty());
    }

    #[test]
    fn a_reconnect_between_snapshots_is_reported() {
        let mut log = VifLog::default();
        log.update(&[status(3, true)]);
        let mut again = status(3, true);
        again.counters.connects = 2;
        assert_eq!(log.update(&[again]).len(), 1);
    }

    #[test]
    fn a_refusal_or_a_drop_says_why_and_only_once() {
        let mut log = VifLog::default();
        let mut refused = status(4, false);
        refused.last_error = Some("tx-ring-ref: not a number".into());
        assert_eq!(
            log.update(core::slice::from_ref(&refused)),
            ["vif 4/0: not connected: tx-ring-ref: not a number"]
        );
        assert!(log.update(&[refused]).is_empty());

        log.update(&[status(5, true)]);
        let mut dropped = status(5, false);
        dropped.counters.protocol_errors = 1;
        dropped.last_error = Some("req_prod moved back".into());
        assert_eq!(
            log.update(&[dropped]),
            ["vif 5/0: not connected: req_prod moved back"]
        );

        // The same reason again after a reconnect is news again.
        let mut back = status(5, true);
        back.counters.connects = 2;
        back.last_error = Some("req_prod moved back".into());
        log.update(core::slice::from_ref(&back));
        back.connected = false;
        assert_eq!(
            log.update(&[back]),
            ["vif 5/0: not connected: req_prod moved back"]
        );
    }

    #[test]
    fn a_frontend_closing_by_itself_and_a_removal_are_reported() {
        let mut log = VifLog::default();
        log.update(&[status(6, true)]);
        assert_eq!(
            log.update(&[status(6, false)]),
            ["vif 6/0: disconnected by its frontend"]
        );
        assert_eq!(
            log.update(&[]),
            ["vif 6/0: gone; it sent 0 packets (0 bytes) and received 0 (0 bytes)"]
        );

        log.update(&[busy_status()]);
        assert_eq!(
            log.update(&[]),
            ["vif 7/0: gone; it sent 7 packets (1000 bytes) and received 3 (900 bytes)"]
        );
    }

    fn busy_status() -> VifStatus {
        let mut busy = status(7, true);
        busy.port_counters = PortCounters {
            received_packets: 7,
            received_bytes: 1000,
            sent_packets: 3,
            sent_bytes: 900,
            drops: 0,
            errors: 0,
        };
        busy
    }
}
