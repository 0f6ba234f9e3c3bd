//! Receive-side steering by Toeplitz hash, as configured by a frontend
//! over the control ring (`xen/io/netif.h`, "Control ring", "Hash types",
//! "Hash algorithms").

use alloc::vec;
use alloc::vec::Vec;

/// `XEN_NETIF_CTRL_HASH_TYPE_IPV4`.
pub const HASH_TYPE_IPV4: u32 = 1 << 0;
/// `XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP`.
pub const HASH_TYPE_IPV4_TCP: u32 = 1 << 1;
/// `XEN_NETIF_CTRL_HASH_TYPE_IPV6`.
pub const HASH_TYPE_IPV6: u32 = 1 << 2;
/// `XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP`.
pub const HASH_TYPE_IPV6_TCP: u32 = 1 << 3;
/// Every hash type this backend computes.
pub const HASH_TYPES_SUPPORTED: u32 =
    HASH_TYPE_IPV4 | HASH_TYPE_IPV4_TCP | HASH_TYPE_IPV6 | HASH_TYPE_IPV6_TCP;

/// Longest key accepted (Linux netback's `XEN_NETBK_MAX_HASH_KEY_SIZE`).
pub const MAX_HASH_KEY_SIZE: usize = 40;
/// Largest mapping table accepted (Linux netback's `XEN_NETBK_MAX_HASH_MAPPING_SIZE`).
pub const MAX_HASH_MAPPING_SIZE: usize = 128;

/// The Toeplitz hash of `input` under `key` (key bytes past its end are
/// zero), as netif.h specifies it.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |index: usize| -> u64 { u64::from(key.get(index).copied().unwrap_or(0)) };
    // A 64-bit window over the key; the top 32 bits are the current key
    // bits aligned with the input bit being looked at.
    let mut window: u64 = 0;
    for index in 0..8 {
        window = (window << 8) | key_byte(index);
    }
    let mut hash: u64 = 0;
    for (next_key, &byte) in (8..).zip(input) {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window <<= 1;
        }
        window |= key_byte(next_key);
    }
    (hash >> 32) as u32
}

/// A frontend's hash configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HashConfig {
    /// Toeplitz selected (`XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ`).
    pub toeplitz: bool,
    /// `XEN_NETIF_CTRL_HASH_TYPE_*` bits enabled.
    pub types: u32,
    /// The key.
    pub key: Vec<u8>,
    /// Hash value (mod size) to queue; empty means hash mod queues.
    pub mapping: Vec<u32>,
}

impl HashConfig {
    /// Whether hashing steers frames at all.
    pub fn enabled(&self) -> bool {
        self.toeplitz && self.types != 0
    }

    /// Resizes the mapping table to `size` zeroed entries.
    pub fn set_mapping_size(&mut self, size: usize) {
        self.mapping = vec![0; size];
    }

    /// The queue for a frame, or `None` when hashing does not apply to it.
    pub fn queue_for(&self, frame: &[u8], queues: usize) -> Option<usize> {
        if !self.enabled() || queues == 0 {
            return None;
        }
        let hash = self.hash(frame)?;
        let queue = if self.mapping.is_empty() {
            hash as usize % queues
        } else {
            self.mapping[hash as usize % self.mapping.len()] as usize
        };
        (queue < queues).then_some(queue)
    }

    /// The hash of a frame's headers per the enabled types, choosing the
    /// widest type that applies ("maximal" in netif.h).
    pub fn hash(&self, frame: &[u8]) -> Option<u32> {
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        match ethertype {
            0x0800 => {
                let ip = frame.get(14..34)?;
                let header_len = usize::from(ip[0] & 0x0f) * 4;
                let addresses = &ip[12..20];
                let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
                if ip[9] == 6 && !fragment && self.types & HASH_TYPE_IPV4_TCP != 0 {
                    let ports = frame.get(14 + header_len..14 + header_len + 4)?;
                    let mut input = [0u8; 12];
                    input[..8].copy_from_slice(addresses);
                    input[8..].copy_from_slice(ports);
                    return Some(toeplitz(&self.key, &input));
                }
                (self.types & HASH_TYPE_IPV4 != 0).then(|| toeplitz(&self.key, addresses))
            }
            0x86dd => {
                let ip = frame.get(14..54)?;
                let addresses = &ip[8..40];
                if ip[6] == 6 && self.types & HASH_TYPE_IPV6_TCP != 0 {
                    let ports = frame.get(54..58)?;
                    let mut input = [0u8; 36];
                    input[..32].copy_from_slice(addresses);
                    input[32..].copy_from_slice(ports);
                    return Some(toeplitz(&self.key, &input));
                }
                (self.types & HASH_TYPE_IPV6 != 0).then(|| toeplitz(&self.key, addresses))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the RSS verification suite.
    const KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    #[test]
    fn toeplitz_matches_the_rss_verification_vectors() {
        // 66.9.149.187:2794 -> 161.142.100.80:1766 (source, then destination).
        let addresses = [66, 9, 149, 187, 161, 142, 100, 80];
        assert_eq!(toeplitz(&KEY, &addresses), 0x323e_8fc2);
        let mut with_ports = [0u8; 12];
        with_ports[..8].copy_from_slice(&addresses);
        with_ports[8..10].copy_from_slice(&2794u16.to_be_bytes());
        with_ports[10..].copy_from_slice(&1766u16.to_be_bytes());
        assert_eq!(toeplitz(&KEY, &with_ports), 0x51cc_c178);
        // 199.92.111.2:14230 -> 65.69.140.83:4739
        let addresses = [199, 92, 111, 2, 65, 69, 140, 83];
        assert_eq!(toeplitz(&KEY, &addresses), 0xd718_262a);
    }

    #[test]
    fn queue_follows_the_mapping_table_and_ignores_bad_entries() {
        let mut config = HashConfig {
            toeplitz: true,
            types: HASH_TYPE_IPV4,
            key: KEY.to_vec(),
            mapping: Vec::new(),
        };
        let mut frame = [0u8; 60];
        frame[12] = 0x08;
        frame[14] = 0x45;
        frame[26..34].copy_from_slice(&[66, 9, 149, 187, 161, 142, 100, 80]);
        assert_eq!(config.queue_for(&frame, 4), Some(0x323e_8fc2 % 4));
        config.set_mapping_size(8);
        config.mapping[(0x323e_8fc2 % 8) as usize] = 3;
        assert_eq!(config.queue_for(&frame, 4), Some(3));
        config.mapping[(0x323e_8fc2 % 8) as usize] = 9;
        assert_eq!(config.queue_for(&frame, 4), None);
        config.types = 0;
        assert_eq!(config.queue_for(&frame, 4), None);
    }
}
