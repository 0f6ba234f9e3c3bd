//! A hostile xenstored on the other side of the ring page: it writes any
//! bytes and any indices, while the client sends requests and polls. The
//! client must never panic, never exceed its in-flight bound, and once it
//! reports the ring broken it must stay broken.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_ring::{LocalMemory, SharedMemory};
use xenbus::platform::TxId;
use xenbus::ring::{self, XenstoreRing};
use xenbus::wire::Request;

fuzz_target!(|data: &[u8]| {
    let memory = LocalMemory::pages(1);
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let mut word =
        || -> Option<u32> { Some(u32::from_le_bytes([next()?, next()?, next()?, next()?])) };
    let Some(start) = word() else { return };
    for offset in [
        ring::REQ_CONS_OFFSET,
        ring::REQ_PROD_OFFSET,
        ring::RSP_CONS_OFFSET,
        ring::RSP_PROD_OFFSET,
    ] {
        memory.store_u32(offset, start);
    }
    let mut client = XenstoreRing::new(memory.clone()).unwrap();
    let mut broken = false;
    let mut bytes = data[4..].iter().copied();
    while let Some(op) = bytes.next() {
        match op % 6 {
            0 => {
                let _ = client.send(&Request::Read { path: "/x" }, TxId::NONE);
            }
            1 => {
                // xenstored produces up to 255 bytes of anything.
                let count = bytes.next().unwrap_or(0);
                let prod = memory.load_u32(ring::RSP_PROD_OFFSET);
                for i in 0..count {
                    let offset =
                        (prod.wrapping_add(u32::from(i)) as usize) % ring::XENSTORE_RING_SIZE;
                    memory.write(ring::RSP_OFFSET + offset, &[bytes.next().unwrap_or(0)]);
                }
                memory.store_u32(ring::RSP_PROD_OFFSET, prod.wrapping_add(u32::from(count)));
            }
            2 => {
                let value: Vec<u8> = bytes.by_ref().take(4).collect();
                if value.len() == 4 {
                    let index = u32::from_le_bytes(value.try_into().unwrap());
                    let offset = if op & 8 == 0 {
                        ring::REQ_CONS_OFFSET
                    } else {
                        ring::RSP_PROD_OFFSET
                    };
                    memory.store_u32(offset, index);
                }
            }
            3 => {
                // xenstored consumes everything it was given.
                let prod = memory.load_u32(ring::REQ_PROD_OFFSET);
                memory.store_u32(ring::REQ_CONS_OFFSET, prod);
            }
            4 => {
                let _ = client.send(
                    &Request::Write {
                        path: "/y",
                        value: &[b'v'; 1500],
                    },
                    TxId(7),
                );
            }
            _ => {
                let result = client.poll();
                if broken {
                    assert!(result.is_err(), "a broken ring came back");
                }
                broken |= result.is_err();
            }
        }
        assert!(client.in_flight() <= ring::MAX_IN_FLIGHT);
        let _ = client.take_notify();
    }
});
