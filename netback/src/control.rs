//! The control ring (`xen/io/netif.h`, "Control ring"): a frontend
//! configures receive-side hashing through it.

use alloc::vec;
use alloc::vec::Vec;

use xen_ring::{BackRing, SharedMemory};
use xenbus::platform::{CopyOp, DomId, GrantCopy, GrantSpan};

use crate::hash::{HashConfig, HASH_TYPES_SUPPORTED, MAX_HASH_KEY_SIZE, MAX_HASH_MAPPING_SIZE};
use crate::wire::PAGE_SIZE;

/// Size of a control ring slot: `struct xen_netif_ctrl_request` (16 bytes)
/// is the larger member of the union.
pub const CTRL_SLOT_SIZE: usize = 16;
/// Size of `struct xen_netif_ctrl_response`.
pub const CTRL_RESPONSE_SIZE: usize = 12;

/// `XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS`.
pub const CTRL_GET_HASH_FLAGS: u16 = 1;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS`.
pub const CTRL_SET_HASH_FLAGS: u16 = 2;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_KEY`.
pub const CTRL_SET_HASH_KEY: u16 = 3;
/// `XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE`.
pub const CTRL_GET_HASH_MAPPING_SIZE: u16 = 4;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE`.
pub const CTRL_SET_HASH_MAPPING_SIZE: u16 = 5;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING`.
pub const CTRL_SET_HASH_MAPPING: u16 = 6;
/// `XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM`.
pub const CTRL_SET_HASH_ALGORITHM: u16 = 7;

/// `XEN_NETIF_CTRL_STATUS_SUCCESS`.
pub const CTRL_STATUS_SUCCESS: u32 = 0;
/// `XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED`.
pub const CTRL_STATUS_NOT_SUPPORTED: u32 = 1;
/// `XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER`.
pub const CTRL_STATUS_INVALID_PARAMETER: u32 = 2;
/// `XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW`.
pub const CTRL_STATUS_BUFFER_OVERFLOW: u32 = 3;

/// `XEN_NETIF_CTRL_HASH_ALGORITHM_NONE`.
pub const HASH_ALGORITHM_NONE: u32 = 0;
/// `XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ`.
pub const HASH_ALGORITHM_TOEPLITZ: u32 = 1;

/// A decoded control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrlRequest {
    /// Echoed in the response.
    pub id: u16,
    /// `XEN_NETIF_CTRL_TYPE_*`.
    pub kind: u16,
    /// Type-specific arguments.
    pub data: [u32; 3],
}

impl CtrlRequest {
    /// Decodes a slot copied out of the ring.
    pub fn decode(slot: &[u8; CTRL_SLOT_SIZE]) -> Self {
        let word =
            |at: usize| u32::from_le_bytes([slot[at], slot[at + 1], slot[at + 2], slot[at + 3]]);
        Self {
            id: u16::from_le_bytes([slot[0], slot[1]]),
            kind: u16::from_le_bytes([slot[2], slot[3]]),
            data: [word(4), word(8), word(12)],
        }
    }
}

/// Encodes a control response.
pub fn encode_response(id: u16, kind: u16, status: u32, data: u32) -> [u8; CTRL_RESPONSE_SIZE] {
    let mut slot = [0u8; CTRL_RESPONSE_SIZE];
    slot[0..2].copy_from_slice(&id.to_le_bytes());
    slot[2..4].copy_from_slice(&kind.to_le_bytes());
    slot[4..8].copy_from_slice(&status.to_le_bytes());
    slot[8..12].copy_from_slice(&data.to_le_bytes());
    slot
}

/// Copies `length` bytes from the start of a granted page.
fn copy_in(grants: &mut impl GrantCopy, domid: DomId, gref: u32, length: usize) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; length];
    if length == 0 {
        return Some(buffer);
    }
    let mut ops = [CopyOp::FromGrant {
        source: GrantSpan {
            domid,
            gref,
            offset: 0,
        },
        destination: &mut buffer,
    }];
    let mut status = [Ok(())];
    grants.copy(&mut ops, &mut status);
    status[0].ok().map(|()| buffer)
}

/// Carries out one request on `hash` for a frontend with `queues` queues;
/// returns `(status, data)`.
pub fn execute(
    request: &CtrlRequest,
    hash: &mut HashConfig,
    queues: usize,
    grants: &mut impl GrantCopy,
    domid: DomId,
) -> (u32, u32) {
    let [first, second, third] = request.data;
    match request.kind {
        CTRL_SET_HASH_ALGORITHM => match first {
            HASH_ALGORITHM_NONE => {
                hash.toeplitz = false;
                (CTRL_STATUS_SUCCESS, 0)
            }
            HASH_ALGORITHM_TOEPLITZ => {
                hash.toeplitz = true;
                (CTRL_STATUS_SUCCESS, 0)
            }
            _ => (CTRL_STATUS_INVALID_PARAMETER, 0),
        },
        CTRL_GET_HASH_FLAGS if hash.toeplitz => (CTRL_STATUS_SUCCESS, HASH_TYPES_SUPPORTED),
        CTRL_SET_HASH_FLAGS if hash.toeplitz => {
            if first & !HASH_TYPES_SUPPORTED != 0 {
                (CTRL_STATUS_INVALID_PARAMETER, 0)
            } else {
                hash.types = first;
                (CTRL_STATUS_SUCCESS, 0)
            }
        }
        CTRL_GET_HASH_FLAGS | CTRL_SET_HASH_FLAGS => (CTRL_STATUS_NOT_SUPPORTED, 0),
        CTRL_SET_HASH_KEY => {
            let length = second as usize;
            if length > MAX_HASH_KEY_SIZE {
                return (CTRL_STATUS_BUFFER_OVERFLOW, 0);
            }
            match copy_in(grants, domid, first, length) {
                Some(key) => {
                    hash.key = key;
                    (CTRL_STATUS_SUCCESS, 0)
                }
                None => (CTRL_STATUS_INVALID_PARAMETER, 0),
            }
        }
        CTRL_GET_HASH_MAPPING_SIZE => (CTRL_STATUS_SUCCESS, MAX_HASH_MAPPING_SIZE as u32),
        CTRL_SET_HASH_MAPPING_SIZE => {
            if first as usize > MAX_HASH_MAPPING_SIZE {
                (CTRL_STATUS_INVALID_PARAMETER, 0)
            } else {
                hash.set_mapping_size(first as usize);
                (CTRL_STATUS_SUCCESS, 0)
            }
        }
        CTRL_SET_HASH_MAPPING => {
            let (length, offset) = (second as usize, third as usize);
            let Some(end) = offset.checked_add(length) else {
                return (CTRL_STATUS_INVALID_PARAMETER, 0);
            };
            if end > hash.mapping.len() {
                return (CTRL_STATUS_INVALID_PARAMETER, 0);
            }
            if length * 4 > PAGE_SIZE {
                return (CTRL_STATUS_BUFFER_OVERFLOW, 0);
            }
            let Some(bytes) = copy_in(grants, domid, first, length * 4) else {
                return (CTRL_STATUS_INVALID_PARAMETER, 0);
            };
            let entries: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
                .collect();
            if entries.iter().any(|queue| *queue as usize >= queues) {
                return (CTRL_STATUS_INVALID_PARAMETER, 0);
            }
            hash.mapping[offset..end].copy_from_slice(&entries);
            (CTRL_STATUS_SUCCESS, 0)
        }
        _ => (CTRL_STATUS_NOT_SUPPORTED, 0),
    }
}

/// Takes up to `budget` requests off the control ring and answers them.
/// Returns whether the frontend should be notified and whether requests
/// are left for the next poll, or the ring error.
pub fn serve<M: SharedMemory>(
    ring: &mut BackRing<M>,
    hash: &mut HashConfig,
    queues: usize,
    grants: &mut impl GrantCopy,
    domid: DomId,
    budget: usize,
) -> Result<(bool, bool), xen_ring::RingError> {
    let mut more = false;
    for served in 0..=budget {
        if served == budget {
            more = ring.unconsumed_requests()? != 0;
            break;
        }
        let mut slot = [0u8; CTRL_SLOT_SIZE];
        if !ring.next_request(&mut slot)? {
            if !ring.final_check_for_requests()? {
                break;
            }
            continue;
        }
        let request = CtrlRequest::decode(&slot);
        let (status, data) = execute(&request, hash, queues, grants, domid);
        ring.push_response(&encode_response(request.id, request.kind, status, data))?;
    }
    Ok((ring.push_responses_and_check_notify(), more))
}
