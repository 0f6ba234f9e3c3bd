//! Wire codec tests: the constants against Xen's own header, round trips of
//! every message type, refusals of malformed input, and properties over
//! random input.

extern crate std;

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::platform::{Access, Permission, TxId, XsError};

const XS_WIRE_H: &str = "/usr/include/xen/io/xs_wire.h";

fn header_text() -> String {
    std::fs::read_to_string(XS_WIRE_H)
        .unwrap_or_else(|error| panic!("{XS_WIRE_H} (Debian libxen-dev) is needed: {error}"))
}

/// The `#define NAME value` of the header, as an integer.
fn define(text: &str, name: &str) -> u32 {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("#define") && words.next() == Some(name) {
            return words.next().unwrap().parse().unwrap();
        }
    }
    panic!("{name} not defined in {XS_WIRE_H}");
}

#[test]
fn constants_match_xs_wire_h() {
    let text = header_text();
    assert_eq!(
        define(&text, "XENSTORE_PAYLOAD_MAX") as usize,
        XENSTORE_PAYLOAD_MAX
    );
    assert_eq!(
        define(&text, "XENSTORE_ABS_PATH_MAX") as usize,
        XENSTORE_ABS_PATH_MAX
    );
    assert_eq!(
        define(&text, "XENSTORE_REL_PATH_MAX") as usize,
        XENSTORE_REL_PATH_MAX
    );
    assert_eq!(
        define(&text, "XENSTORE_RING_SIZE") as usize,
        crate::ring::XENSTORE_RING_SIZE
    );
    assert_eq!(
        define(&text, "XENSTORE_SERVER_FEATURE_ERROR"),
        crate::ring::XENSTORE_SERVER_FEATURE_ERROR
    );
    assert_eq!(
        define(&text, "XENSTORE_CONNECTED"),
        crate::ring::XENSTORE_CONNECTED
    );
    assert_eq!(
        define(&text, "XENSTORE_RECONNECT"),
        crate::ring::XENSTORE_RECONNECT
    );
}

/// Walks `enum xsd_sockmsg_type` the way a C compiler numbers it.
#[test]
fn message_types_match_xs_wire_h() {
    let text = header_text();
    let start = text.find("enum xsd_sockmsg_type").unwrap();
    let body = &text[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    let mut numbers: Vec<(String, u32)> = Vec::new();
    let mut next = 0u32;
    for line in body.lines() {
        let line = line.split("/*").next().unwrap().trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = line.trim_end_matches(',');
        let (name, number) = match entry.split_once('=') {
            None => (entry.trim(), next),
            Some((name, expression)) => {
                let expression = expression.trim();
                let number = if let Some(hex) = expression.strip_prefix("0x") {
                    u32::from_str_radix(hex, 16).unwrap()
                } else {
                    let (base, offset) = expression.split_once('+').unwrap();
                    let base = numbers.iter().find(|(n, _)| n == base.trim()).unwrap().1;
                    base + offset.trim().parse::<u32>().unwrap()
                };
                (name.trim(), number)
            }
        };
        numbers.push((name.to_string(), number));
        next = number + 1;
    }
    let expected = |name: &str| numbers.iter().find(|(n, _)| n == name).map(|e| e.1);
    let ours = [
        ("XS_CONTROL", MessageType::Control),
        ("XS_DIRECTORY", MessageType::Directory),
        ("XS_READ", MessageType::Read),
        ("XS_GET_PERMS", MessageType::GetPerms),
        ("XS_WATCH", MessageType::Watch),
        ("XS_UNWATCH", MessageType::Unwatch),
        ("XS_TRANSACTION_START", MessageType::TransactionStart),
        ("XS_TRANSACTION_END", MessageType::TransactionEnd),
        ("XS_INTRODUCE", MessageType::Introduce),
        ("XS_RELEASE", MessageType::Release),
        ("XS_GET_DOMAIN_PATH", MessageType::GetDomainPath),
        ("XS_WRITE", MessageType::Write),
        ("XS_MKDIR", MessageType::Mkdir),
        ("XS_RM", MessageType::Rm),
        ("XS_SET_PERMS", MessageType::SetPerms),
        ("XS_WATCH_EVENT", MessageType::WatchEvent),
        ("XS_ERROR", MessageType::Error),
        ("XS_IS_DOMAIN_INTRODUCED", MessageType::IsDomainIntroduced),
        ("XS_RESUME", MessageType::Resume),
        ("XS_SET_TARGET", MessageType::SetTarget),
        ("XS_RESET_WATCHES", MessageType::ResetWatches),
        ("XS_DIRECTORY_PART", MessageType::DirectoryPart),
    ];
    for (name, kind) in ours {
        assert_eq!(expected(name), Some(kind as u32), "{name}");
    }
    assert_eq!(expected("XS_TYPE_COUNT"), Some(XS_TYPE_COUNT));
    assert_eq!(ours.len(), MessageType::ALL.len());
    // Every number below XS_TYPE_COUNT that the header defines is ours;
    // the removed XS_RESTRICT (20) is not.
    for number in 0..XS_TYPE_COUNT + 2 {
        let defined = numbers
            .iter()
            .any(|(n, v)| *v == number && n != "XS_TYPE_COUNT");
        assert_eq!(MessageType::from_u32(number).is_some(), defined, "{number}");
    }
    assert_eq!(MessageType::from_u32(0xffff), None);
}

#[test]
fn error_names_match_xs_wire_h() {
    let text = header_text();
    let mut names = 0;
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("XSD_ERROR(") {
            let name = rest.split(')').next().unwrap();
            let error = parse_error_name(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(error_name(error), Some(name));
            names += 1;
        }
    }
    assert_eq!(names, 16);
    assert_eq!(error_name(XsError::Protocol), None);
    for error in NAMED_ERRORS {
        assert_eq!(parse_error_name(error_name(error).unwrap()), Some(error));
    }
}

fn encode_request(request: &Request<'_>, req_id: u32, tx: TxId) -> Vec<u8> {
    let mut out = Vec::new();
    request.encode(req_id, tx, &mut out).unwrap();
    out
}

/// Decodes one whole message with a fresh stream decoder.
fn frame_of(bytes: &[u8]) -> Message {
    let mut decoder = StreamDecoder::new();
    let mut input = bytes;
    let message = decoder.feed(&mut input).unwrap().unwrap();
    assert!(input.is_empty());
    assert!(decoder.at_boundary());
    message
}

#[test]
fn request_bytes_are_what_xenstore_txt_specifies() {
    let bytes = encode_request(
        &Request::Write {
            path: "/a/b",
            value: b"xy",
        },
        7,
        TxId(3),
    );
    assert_eq!(
        bytes,
        [11, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 7, 0, 0, 0, b'/', b'a', b'/', b'b', 0, b'x', b'y']
    );
    let bytes = encode_request(&Request::TransactionStart, 1, TxId(9));
    assert_eq!(bytes, [6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    let bytes = encode_request(
        &Request::SetPerms {
            path: "d",
            perms: Cow::Borrowed(&[
                Permission {
                    domid: 4,
                    access: Access::None,
                },
                Permission {
                    domid: 5,
                    access: Access::Read,
                },
            ]),
        },
        2,
        TxId::NONE,
    );
    assert_eq!(&bytes[HEADER_LEN..], b"d\0n4\0r5\0");
    let bytes = encode_request(
        &Request::Watch {
            path: "backend/vbd",
            token: "t",
        },
        2,
        TxId(5),
    );
    assert_eq!(&bytes[8..12], &[0, 0, 0, 0], "watches carry no transaction");
    assert_eq!(&bytes[HEADER_LEN..], b"backend/vbd\0t\0");
}

fn all_requests() -> Vec<Request<'static>> {
    vec![
        Request::Read {
            path: "/local/domain/5/device/vbd/51728/state",
        },
        Request::Write {
            path: "backend/vbd/5/51728/state",
            value: b"4",
        },
        Request::Write {
            path: "a",
            value: b"",
        },
        Request::Write {
            path: "bin",
            value: b"\0\x01\xff\0",
        },
        Request::Mkdir { path: "/x" },
        Request::Rm { path: "/x/y" },
        Request::Directory {
            path: "backend/vbd",
        },
        Request::GetPerms { path: "/x" },
        Request::SetPerms {
            path: "/x",
            perms: Cow::Owned(vec![
                Permission {
                    domid: 0,
                    access: Access::Both,
                },
                Permission {
                    domid: 65535,
                    access: Access::Write,
                },
                Permission {
                    domid: 12,
                    access: Access::None,
                },
            ]),
        },
        Request::Watch {
            path: "@releaseDomain",
            token: "tok",
        },
        Request::Unwatch {
            path: "backend",
            token: "tok",
        },
        Request::TransactionStart,
        Request::TransactionEnd { commit: true },
        Request::TransactionEnd { commit: false },
    ]
}

#[test]
fn every_request_round_trips() {
    for request in all_requests() {
        let bytes = encode_request(&request, 0xdead_beef, TxId(17));
        let message = frame_of(&bytes);
        assert_eq!(message.header.kind, request.kind());
        assert_eq!(message.header.req_id, 0xdead_beef);
        assert_eq!(message.header.len as usize, bytes.len() - HEADER_LEN);
        let decoded = Request::decode(message.header.kind, &message.payload).unwrap();
        assert_eq!(decoded, request);
    }
}

fn all_replies() -> Vec<(MessageType, Reply)> {
    let mut replies = vec![
        (MessageType::Read, Reply::Value(b"/srv/disk.img".to_vec())),
        (MessageType::Read, Reply::Value(Vec::new())),
        (MessageType::Read, Reply::Value(b"\0bin\0ary\0".to_vec())),
        (
            MessageType::Directory,
            Reply::Directory(vec!["51712".into(), "51728".into()]),
        ),
        (MessageType::Directory, Reply::Directory(Vec::new())),
        (
            MessageType::GetPerms,
            Reply::Perms(vec![
                Permission {
                    domid: 4,
                    access: Access::None,
                },
                Permission {
                    domid: 5,
                    access: Access::Read,
                },
            ]),
        ),
        (
            MessageType::TransactionStart,
            Reply::TransactionStarted(TxId(42)),
        ),
        (
            MessageType::TransactionStart,
            Reply::TransactionStarted(TxId(u32::MAX)),
        ),
    ];
    for kind in [
        MessageType::Write,
        MessageType::Mkdir,
        MessageType::Rm,
        MessageType::SetPerms,
        MessageType::Watch,
        MessageType::Unwatch,
        MessageType::TransactionEnd,
    ] {
        replies.push((kind, Reply::Ok));
    }
    for error in NAMED_ERRORS {
        replies.push((MessageType::Read, Reply::Error(error)));
    }
    replies
}

#[test]
fn every_reply_round_trips() {
    for (request, reply) in all_replies() {
        let mut bytes = Vec::new();
        reply.encode(request, 9, 3, &mut bytes).unwrap();
        let message = frame_of(&bytes);
        let incoming = message.decode_incoming().unwrap();
        let Incoming::Reply {
            req_id,
            kind,
            reply: decoded,
        } = incoming
        else {
            panic!("not a reply: {incoming:?}");
        };
        assert_eq!(req_id, 9);
        assert_eq!(message.header.tx_id, 3);
        if let Reply::Error(_) = reply {
            assert_eq!(kind, MessageType::Error);
        } else {
            assert_eq!(kind, request);
        }
        assert_eq!(decoded, reply);
    }
}

#[test]
fn watch_event_round_trips() {
    let event = WatchEvent {
        path: "backend/vbd/5/51728/online".into(),
        token: "vbd".into(),
    };
    let mut bytes = Vec::new();
    event.encode(&mut bytes).unwrap();
    assert_eq!(&bytes[..4], &[15, 0, 0, 0]);
    assert_eq!(&bytes[HEADER_LEN..], b"backend/vbd/5/51728/online\0vbd\0");
    let message = frame_of(&bytes);
    assert_eq!(message.decode_incoming(), Ok(Incoming::WatchEvent(event)));
}

#[test]
fn xenstored_reply_spellings() {
    // C xenstored and oxenstored both send "OK\0"; accept a bare "OK" too.
    assert_eq!(Reply::decode(MessageType::Write, b"OK\0"), Ok(Reply::Ok));
    assert_eq!(Reply::decode(MessageType::Write, b"OK"), Ok(Reply::Ok));
    assert_eq!(
        Reply::decode(MessageType::Error, b"ENOENT\0"),
        Ok(Reply::Error(XsError::Enoent))
    );
    assert_eq!(
        Reply::decode(MessageType::TransactionStart, b"12\0"),
        Ok(Reply::TransactionStarted(TxId(12)))
    );
}

#[test]
fn malformed_replies_are_refused() {
    use DecodeError as E;
    use MessageType as T;
    let cases: &[(MessageType, &[u8], DecodeError)] = &[
        (T::Write, b"", E::NotOk),
        (T::Write, b"ok\0", E::NotOk),
        (T::Write, b"OK\0\0", E::NotOk),
        (T::Mkdir, b"KO\0", E::NotOk),
        (T::Error, b"ENOENT", E::MissingNul),
        (T::Error, b"", E::MissingNul),
        (T::Error, b"ENOPE\0", E::UnknownErrorName),
        (T::Error, b"enoent\0", E::UnknownErrorName),
        (T::Error, b"\0", E::UnknownErrorName),
        (T::Error, b"\xff\xfe\0", E::UnknownErrorName),
        (T::Error, b"ENOENT\0x", E::TrailingBytes),
        (T::Error, b"ENOENT\0EIO\0", E::TrailingBytes),
        (T::Directory, b"a\0b", E::MissingNul),
        (T::Directory, b"a\0\0", E::EmptyString),
        (T::Directory, b"\0", E::EmptyString),
        (T::Directory, b"\xc3\0", E::NotUtf8),
        (T::GetPerms, b"", E::NoPermissions),
        (T::GetPerms, b"b0", E::MissingNul),
        (T::GetPerms, b"x0\0", E::BadPermission),
        (T::GetPerms, b"b\0", E::BadPermission),
        (T::GetPerms, b"b00\0", E::BadPermission),
        (T::GetPerms, b"b-1\0", E::BadPermission),
        (T::GetPerms, b"b65536\0", E::BadPermission),
        (T::GetPerms, b"b 5\0", E::BadPermission),
        (T::GetPerms, b"b0\0\0", E::BadPermission),
        (T::GetPerms, b"\0", E::BadPermission),
        (T::TransactionStart, b"0\0", E::BadTransactionId),
        (T::TransactionStart, b"012\0", E::BadTransactionId),
        (T::TransactionStart, b"12", E::MissingNul),
        (T::TransactionStart, b"4294967296\0", E::BadTransactionId),
        (T::TransactionStart, b"x\0", E::BadTransactionId),
        (T::TransactionStart, b"1\0\0", E::TrailingBytes),
        (T::Introduce, b"OK\0", E::UnexpectedType(T::Introduce)),
        (T::Control, b"", E::UnexpectedType(T::Control)),
    ];
    for (kind, payload, error) in cases {
        assert_eq!(
            Reply::decode(*kind, payload),
            Err(*error),
            "{kind:?} {payload:?}"
        );
    }
    let events: &[(&[u8], DecodeError)] = &[
        (b"", E::MissingNul),
        (b"path\0", E::MissingNul),
        (b"path\0tok", E::MissingNul),
        (b"path\0tok\0x", E::TrailingBytes),
        (b"path\0tok\0x\0", E::TrailingBytes),
        (b"\0tok\0", E::EmptyString),
        (b"path\0\0", E::EmptyString),
        (b"p\xffth\0tok\0", E::NotUtf8),
    ];
    for (payload, error) in events {
        assert_eq!(WatchEvent::decode(payload), Err(*error), "{payload:?}");
    }
}

#[test]
fn malformed_requests_are_refused() {
    use DecodeError as E;
    use MessageType as T;
    let cases: &[(MessageType, &[u8], DecodeError)] = &[
        (T::Read, b"", E::MissingNul),
        (T::Read, b"/a", E::MissingNul),
        (T::Read, b"\0", E::EmptyString),
        (T::Read, b"/a\0b", E::TrailingBytes),
        (T::Write, b"/a", E::MissingNul),
        (T::Write, b"\0v", E::EmptyString),
        (T::SetPerms, b"/a\0", E::NoPermissions),
        (T::SetPerms, b"/a\0q1\0", E::BadPermission),
        (T::SetPerms, b"", E::MissingNul),
        (T::Watch, b"/a\0", E::MissingNul),
        (T::TransactionStart, b"x\0", E::TrailingBytes),
        (T::TransactionStart, b"", E::MissingNul),
        (T::TransactionEnd, b"X\0", E::BadCommitFlag),
        (T::TransactionEnd, b"TT\0", E::BadCommitFlag),
        (T::TransactionEnd, b"T", E::MissingNul),
        (T::WatchEvent, b"a\0b\0", E::UnexpectedType(T::WatchEvent)),
        (T::Error, b"EIO\0", E::UnexpectedType(T::Error)),
    ];
    for (kind, payload, error) in cases {
        assert_eq!(
            Request::decode(*kind, payload),
            Err(*error),
            "{kind:?} {payload:?}"
        );
    }
}

#[test]
fn encoding_refuses_what_would_break_framing_or_limits() {
    let mut out = vec![1, 2, 3];
    let refuse = |request: Request<'_>, error: EncodeError, out: &mut Vec<u8>| {
        assert_eq!(
            request.encode(1, TxId::NONE, out),
            Err(error),
            "{request:?}"
        );
        assert_eq!(*out, vec![1, 2, 3], "output changed on error");
    };
    refuse(
        Request::Read { path: "" },
        EncodeError::EmptyString,
        &mut out,
    );
    refuse(
        Request::Read { path: "a\0b" },
        EncodeError::EmbeddedNul,
        &mut out,
    );
    refuse(
        Request::Watch {
            path: "a",
            token: "t\0",
        },
        EncodeError::EmbeddedNul,
        &mut out,
    );
    refuse(
        Request::Watch {
            path: "a",
            token: "",
        },
        EncodeError::EmptyString,
        &mut out,
    );
    let long = "a".repeat(XENSTORE_REL_PATH_MAX + 1);
    refuse(
        Request::Read { path: &long },
        EncodeError::PathTooLong,
        &mut out,
    );
    let long_absolute = alloc::format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX));
    refuse(
        Request::Read {
            path: &long_absolute,
        },
        EncodeError::PathTooLong,
        &mut out,
    );
    let fits = alloc::format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX - 1));
    Request::Read { path: &fits }
        .encode(1, TxId::NONE, &mut Vec::new())
        .unwrap();
    let value = vec![b'v'; XENSTORE_PAYLOAD_MAX - 2];
    refuse(
        Request::Write {
            path: "ab",
            value: &value,
        },
        EncodeError::PayloadTooLarge,
        &mut out,
    );
    Request::Write {
        path: "a",
        value: &value,
    }
    .encode(1, TxId::NONE, &mut Vec::new())
    .unwrap();
    refuse(
        Request::SetPerms {
            path: "a",
            perms: Cow::Borrowed(&[]),
        },
        EncodeError::NoPermissions,
        &mut out,
    );
    let many = vec![
        Permission {
            domid: 30000,
            access: Access::Both
        };
        1000
    ];
    refuse(
        Request::SetPerms {
            path: "a",
            perms: Cow::Owned(many),
        },
        EncodeError::PayloadTooLarge,
        &mut out,
    );
    assert_eq!(
        Reply::Error(XsError::Protocol).encode(MessageType::Read, 1, 0, &mut out),
        Err(EncodeError::UnnamedError)
    );
    assert_eq!(
        Reply::Value(vec![0; XENSTORE_PAYLOAD_MAX + 1]).encode(MessageType::Read, 1, 0, &mut out),
        Err(EncodeError::PayloadTooLarge)
    );
    assert_eq!(out, vec![1, 2, 3]);
}

fn header_bytes(kind: u32, len: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [kind, 1, 0, len] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes
}

#[test]
fn stream_decoder_handles_any_split() {
    let mut stream = Vec::new();
    for request in all_requests() {
        request.encode(5, TxId(1), &mut stream).unwrap();
    }
    let expected: Vec<Message> = {
        let mut decoder = StreamDecoder::new();
        let mut input = stream.as_slice();
        let mut messages = Vec::new();
        while let Some(message) = decoder.feed(&mut input).unwrap() {
            messages.push(message);
        }
        assert!(input.is_empty());
        messages
    };
    assert_eq!(expected.len(), all_requests().len());
    for chunk in [1, 2, 3, 7, 15, 16, 17, 100] {
        let mut decoder = StreamDecoder::new();
        let mut messages = Vec::new();
        for piece in stream.chunks(chunk) {
            let mut input = piece;
            while !input.is_empty() {
                if let Some(message) = decoder.feed(&mut input).unwrap() {
                    messages.push(message);
                }
            }
        }
        assert_eq!(messages, expected, "chunk {chunk}");
        assert!(decoder.at_boundary());
    }
}

#[test]
fn stream_decoder_refuses_bad_headers_and_stays_broken() {
    for (bytes, error) in [
        (header_bytes(2, 4097), DecodeError::PayloadTooLarge(4097)),
        (
            header_bytes(2, u32::MAX),
            DecodeError::PayloadTooLarge(u32::MAX),
        ),
        (header_bytes(20, 0), DecodeError::UnknownType(20)),
        (header_bytes(23, 0), DecodeError::UnknownType(23)),
        (header_bytes(0xffff, 0), DecodeError::UnknownType(0xffff)),
    ] {
        let mut decoder = StreamDecoder::new();
        let mut input = &bytes[..15];
        assert_eq!(decoder.feed(&mut input), Ok(None), "truncated header");
        let mut input = &bytes[15..];
        assert_eq!(decoder.feed(&mut input), Err(error));
        let good = header_bytes(2, 0);
        let mut input = good.as_slice();
        assert_eq!(decoder.feed(&mut input), Err(DecodeError::Broken));
        decoder.reset();
        let mut input = good.as_slice();
        assert!(decoder.feed(&mut input).unwrap().is_some());
    }
    // The largest payload is fine.
    let mut bytes = header_bytes(2, 4096);
    bytes.extend_from_slice(&[b'x'; 4096]);
    let message = frame_of(&bytes);
    assert_eq!(message.payload.len(), 4096);
}

#[test]
fn truncated_messages_wait_for_more() {
    let bytes = encode_request(&Request::Read { path: "/abc" }, 1, TxId::NONE);
    for cut in 0..bytes.len() {
        let mut decoder = StreamDecoder::new();
        let mut input = &bytes[..cut];
        assert_eq!(decoder.feed(&mut input), Ok(None));
        assert!(input.is_empty());
        assert_eq!(decoder.at_boundary(), cut == 0);
        let mut rest = &bytes[cut..];
        assert!(decoder.feed(&mut rest).unwrap().is_some());
    }
}

fn permission() -> impl Strategy<Value = Permission> {
    (any::<u16>(), 0..4u8).prop_map(|(domid, letter)| Permission {
        domid,
        access: [Access::None, Access::Read, Access::Write, Access::Both][letter as usize],
    })
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_@/-]{1,40}"
}

fn error() -> impl Strategy<Value = XsError> {
    (0..NAMED_ERRORS.len()).prop_map(|index| NAMED_ERRORS[index])
}

proptest! {
    #[test]
    fn permissions_follow_the_rule(text in "[nrwbx]?[0-9]{0,6}|.{0,8}") {
        let bytes = text.as_bytes();
        // An access letter, then "0" or a non-zero digit and digits, <= 65535.
        let expected = match bytes.split_first() {
            Some((&letter, digits)) if b"nrwb".contains(&letter) => {
                let canonical = digits == b"0"
                    || (matches!(digits.first(), Some(b'1'..=b'9'))
                        && digits.iter().all(u8::is_ascii_digit));
                let domid = core::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u32>().ok())
                    .filter(|n| *n <= 0xffff);
                if canonical { domid } else { None }
            }
            _ => None,
        };
        let parsed = parse_permission(bytes);
        prop_assert_eq!(parsed.ok().map(|p| u32::from(p.domid)), expected);
        if let Ok(permission) = parsed {
            let mut out = Vec::new();
            encode_permission(&permission, &mut out);
            prop_assert_eq!(out, bytes);
        }
    }

    #[test]
    fn random_bytes_never_panic_the_stream_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..6000),
        chunk in 1usize..64,
    ) {
        let mut decoder = StreamDecoder::new();
        for piece in bytes.chunks(chunk) {
            let mut input = piece;
            while !input.is_empty() {
                match decoder.feed(&mut input) {
                    Ok(Some(message)) => {
                        prop_assert_eq!(message.header.len as usize, message.payload.len());
                        let _ = message.decode_incoming();
                        let _ = Request::decode(message.header.kind, &message.payload);
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn random_payloads_never_panic_the_body_decoders(
        kind in 0u32..XS_TYPE_COUNT,
        payload in proptest::collection::vec(
            prop_oneof![Just(0u8), Just(b'O'), Just(b'K'), Just(b'b'), any::<u8>()], 0..64),
    ) {
        if let Some(kind) = MessageType::from_u32(kind) {
            let _ = Reply::decode(kind, &payload);
            let _ = Request::decode(kind, &payload);
            let _ = WatchEvent::decode(&payload);
        }
    }

    #[test]
    fn requests_round_trip(
        path in name(),
        token in name(),
        value in proptest::collection::vec(any::<u8>(), 0..200),
        perms in proptest::collection::vec(permission(), 1..20),
        which in 0..11u8,
        req_id in any::<u32>(),
        tx in any::<u32>(),
        commit in any::<bool>(),
    ) {
        let request = match which {
            0 => Request::Read { path: &path },
            1 => Request::Write { path: &path, value: &value },
            2 => Request::Mkdir { path: &path },
            3 => Request::Rm { path: &path },
            4 => Request::Directory { path: &path },
            5 => Request::GetPerms { path: &path },
            6 => Request::SetPerms { path: &path, perms: Cow::Borrowed(&perms) },
            7 => Request::Watch { path: &path, token: &token },
            8 => Request::Unwatch { path: &path, token: &token },
            9 => Request::TransactionStart,
            _ => Request::TransactionEnd { commit },
        };
        let bytes = encode_request(&request, req_id, TxId(tx));
        let message = frame_of(&bytes);
        prop_assert_eq!(message.header.req_id, req_id);
        prop_assert_eq!(Request::decode(message.header.kind, &message.payload), Ok(request));
    }

    #[test]
    fn replies_round_trip(
        value in proptest::collection::vec(any::<u8>(), 0..300),
        names in proptest::collection::vec("[a-z0-9-]{1,12}", 0..30),
        perms in proptest::collection::vec(permission(), 1..20),
        tx in 1u32..,
        error in error(),
        which in 0..6u8,
    ) {
        let (kind, reply) = match which {
            0 => (MessageType::Read, Reply::Value(value)),
            1 => (MessageType::Directory, Reply::Directory(names)),
            2 => (MessageType::GetPerms, Reply::Perms(perms)),
            3 => (MessageType::TransactionStart, Reply::TransactionStarted(TxId(tx))),
            4 => (MessageType::Rm, Reply::Ok),
            _ => (MessageType::Write, Reply::Error(error)),
        };
        let mut bytes = Vec::new();
        reply.encode(kind, 1, 2, &mut bytes).unwrap();
        let message = frame_of(&bytes);
        prop_assert_eq!(Reply::decode(message.header.kind, &message.payload), Ok(reply));
    }

    #[test]
    fn streams_of_messages_survive_random_splits(
        events in proptest::collection::vec((name(), name()), 1..20),
        cuts in proptest::collection::vec(1usize..50, 1..40),
    ) {
        let mut stream = Vec::new();
        for (path, token) in &events {
            WatchEvent { path: path.clone(), token: token.clone() }.encode(&mut stream).unwrap();
        }
        let mut decoder = StreamDecoder::new();
        let mut decoded = Vec::new();
        let mut rest = stream.as_slice();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let take = (*cut.next().unwrap()).min(rest.len());
            let mut input = &rest[..take];
            rest = &rest[take..];
            while !input.is_empty() {
                if let Some(message) = decoder.feed(&mut input).unwrap() {
                    match message.decode_incoming().unwrap() {
                        Incoming::WatchEvent(event) => decoded.push((event.path, event.token)),
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
            }
        }
        prop_assert_eq!(decoded, events);
    }
}
