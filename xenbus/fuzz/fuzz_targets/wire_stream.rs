//! Arbitrary bytes from xenstored, in arbitrary pieces: the stream decoder
//! and the payload decoders must never panic, and whatever they accept must
//! encode back to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenbus::platform::TxId;
use xenbus::wire::{Incoming, Request, StreamDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = StreamDecoder::new();
    for piece in stream.chunks(chunk) {
        let mut input = piece;
        while !input.is_empty() {
            let message = match decoder.feed(&mut input) {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(_) => return,
            };
            assert_eq!(message.header.len as usize, message.payload.len());
            match message.decode_incoming() {
                Ok(Incoming::Reply { kind, reply, .. }) => {
                    let mut bytes = Vec::new();
                    reply.encode(kind, 1, 0, &mut bytes).unwrap();
                    let mut again = StreamDecoder::new();
                    let mut slice = bytes.as_slice();
                    let decoded = again.feed(&mut slice).unwrap().unwrap();
                    assert_eq!(
                        decoded
                            .decode_incoming()
                            .ok()
                            .map(|incoming| match incoming {
                                Incoming::Reply { reply, .. } => Some(reply),
                                Incoming::WatchEvent(_) => None,
                            }),
                        Some(Some(reply))
                    );
                }
                Ok(Incoming::WatchEvent(event)) => {
                    let mut bytes = Vec::new();
                    event.encode(&mut bytes).unwrap();
                    assert_eq!(&bytes[16..], &message.payload[..]);
                }
                Err(_) => {}
            }
            if let Ok(request) = Request::decode(message.header.kind, &message.payload) {
                let mut bytes = Vec::new();
                // Decoded paths may exceed what a client is allowed to send;
                // only requests that encode are compared.
                if request.encode(1, TxId(1), &mut bytes).is_ok() {
                    let mut again = StreamDecoder::new();
                    let mut slice = bytes.as_slice();
                    let decoded = again.feed(&mut slice).unwrap().unwrap();
                    assert_eq!(
                        Request::decode(decoded.header.kind, &decoded.payload),
                        Ok(request)
                    );
                }
            }
        }
    }
});
