//! The xenstore wire protocol: message framing and payloads, as specified
//! by [`xen/io/xs_wire.h`](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/io/xs_wire.h)
//! and [`docs/misc/xenstore.txt`](https://xenbits.xen.org/docs/unstable/misc/xenstore.txt).
//!
//! Every message is a 16-byte header (`struct xsd_sockmsg`: `type`,
//! `req_id`, `tx_id`, `len`, little-endian `u32`s) followed by `len` bytes
//! of payload, at most [`XENSTORE_PAYLOAD_MAX`]. Payloads are mostly
//! NUL-terminated strings; the notation below is the document's, `|` for a
//! NUL:
//!
//! | type | request | reply |
//! | --- | --- | --- |
//! | `READ` | `<path>\|` | `<value>` (raw bytes) |
//! | `WRITE` | `<path>\|<value>` | `OK\|` |
//! | `MKDIR`, `RM` | `<path>\|` | `OK\|` |
//! | `DIRECTORY` | `<path>\|` | `<name>\|`* |
//! | `GET_PERMS` | `<path>\|` | `<perm>\|`+ |
//! | `SET_PERMS` | `<path>\|<perm>\|`+ | `OK\|` |
//! | `WATCH`, `UNWATCH` | `<path>\|<token>\|` | `OK\|` |
//! | `TRANSACTION_START` | `\|` | `<decimal tx id>\|` |
//! | `TRANSACTION_END` | `T\|` or `F\|` | `OK\|` |
//! | `ERROR` (reply only) | | `<errno name>\|` |
//! | `WATCH_EVENT` (unsolicited) | | `<path>\|<token>\|` |
//!
//! A permission is an access letter (`n`, `r`, `w`, `b`) and a decimal
//! domid: `b0`, `r5`. Requests are encoded here and replies decoded (and the
//! reverse, for simulators and tests). [`StreamDecoder`] cuts a byte stream
//! arriving in arbitrary pieces into messages and refuses a header that no
//! correct xenstored sends, so a broken or hostile peer costs at most one
//! bounded buffer.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::platform::{Access, Permission, TxId, XsError};
use crate::value;

/// Size of [`Header`] on the wire (`sizeof(struct xsd_sockmsg)`).
pub const HEADER_LEN: usize = 16;
/// The largest payload either side may send (`XENSTORE_PAYLOAD_MAX`).
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// The longest absolute path xenstored accepts (`XENSTORE_ABS_PATH_MAX`).
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// The longest relative path a client should send (`XENSTORE_REL_PATH_MAX`).
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// Message types (`enum xsd_sockmsg_type`). The numbering is checked against
/// the installed `xs_wire.h` by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MessageType {
    /// `XS_CONTROL` (formerly `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`.
    Directory = 1,
    /// `XS_READ`.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPerms = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`.
    Introduce = 8,
    /// `XS_RELEASE`.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Rm = 13,
    /// `XS_SET_PERMS`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`.
    WatchEvent = 15,
    /// `XS_ERROR`.
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`.
    SetTarget = 19,
    /// `XS_RESET_WATCHES` (20, `XS_RESTRICT`, was removed).
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`.
    DirectoryPart = 22,
}

/// `XS_TYPE_COUNT`: one more than the largest defined type.
pub const XS_TYPE_COUNT: u32 = 23;

impl MessageType {
    /// Every defined type, in numeric order.
    pub const ALL: [MessageType; 22] = [
        Self::Control,
        Self::Directory,
        Self::Read,
        Self::GetPerms,
        Self::Watch,
        Self::Unwatch,
        Self::TransactionStart,
        Self::TransactionEnd,
        Self::Introduce,
        Self::Release,
        Self::GetDomainPath,
        Self::Write,
        Self::Mkdir,
        Self::Rm,
        Self::SetPerms,
        Self::WatchEvent,
        Self::Error,
        Self::IsDomainIntroduced,
        Self::Resume,
        Self::SetTarget,
        Self::ResetWatches,
        Self::DirectoryPart,
    ];

    /// The type with this number, or `None` for an undefined number.
    pub fn from_u32(number: u32) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|kind| *kind as u32 == number)
    }
}

/// Why bytes from xenstored (or a client, for a simulator) were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The header's type is not a defined `xsd_sockmsg_type`.
    UnknownType(u32),
    /// The header's length exceeds `XENSTORE_PAYLOAD_MAX`.
    PayloadTooLarge(u32),
    /// The message type is not valid in this direction or position.
    UnexpectedType(MessageType),
    /// A string field lacks its terminating NUL.
    MissingNul,
    /// There are bytes after the last field.
    TrailingBytes,
    /// A string field is not UTF-8.
    NotUtf8,
    /// A directory entry, path or token is empty.
    EmptyString,
    /// The success reply is not `OK`.
    NotOk,
    /// The error reply names no known errno.
    UnknownErrorName,
    /// A permission is not an access letter followed by a canonical domid.
    BadPermission,
    /// A permission list is empty.
    NoPermissions,
    /// The transaction id is not a canonical non-zero decimal.
    BadTransactionId,
    /// `TRANSACTION_END` carries neither `T` nor `F`.
    BadCommitFlag,
    /// The stream failed earlier and cannot be resynchronised.
    Broken,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(kind) => write!(f, "unknown message type {kind}"),
            Self::PayloadTooLarge(len) => write!(f, "payload of {len} bytes exceeds 4096"),
            Self::UnexpectedType(kind) => write!(f, "unexpected message type {kind:?}"),
            Self::MissingNul => f.write_str("a string lacks its terminating NUL"),
            Self::TrailingBytes => f.write_str("bytes after the last field"),
            Self::NotUtf8 => f.write_str("a string is not UTF-8"),
            Self::EmptyString => f.write_str("an empty name, path or token"),
            Self::NotOk => f.write_str("the success reply is not OK"),
            Self::UnknownErrorName => f.write_str("the error reply names no known errno"),
            Self::BadPermission => f.write_str("malformed permission"),
            Self::NoPermissions => f.write_str("empty permission list"),
            Self::BadTransactionId => f.write_str("malformed transaction id"),
            Self::BadCommitFlag => f.write_str("TRANSACTION_END is neither T nor F"),
            Self::Broken => f.write_str("the stream is broken"),
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload would exceed `XENSTORE_PAYLOAD_MAX`.
    PayloadTooLarge,
    /// A path is longer than `XENSTORE_ABS_PATH_MAX`/`XENSTORE_REL_PATH_MAX`.
    PathTooLong,
    /// A path, token or name is empty.
    EmptyString,
    /// A path, token or name contains a NUL, which would break the framing.
    EmbeddedNul,
    /// A permission list is empty.
    NoPermissions,
    /// The error has no xenstore name (`XsError::Protocol`).
    UnnamedError,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PayloadTooLarge => "the payload would exceed 4096 bytes",
            Self::PathTooLong => "the path is too long",
            Self::EmptyString => "empty path, token or name",
            Self::EmbeddedNul => "a string contains a NUL",
            Self::NoPermissions => "empty permission list",
            Self::UnnamedError => "the error has no xenstore name",
        })
    }
}

/// A message header (`struct xsd_sockmsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message type.
    pub kind: MessageType,
    /// Chosen by the client, echoed in the reply; 0 in watch events.
    pub req_id: u32,
    /// The transaction, or 0; 0 in watch events.
    pub tx_id: u32,
    /// Payload length, at most [`XENSTORE_PAYLOAD_MAX`].
    pub len: u32,
}

impl Header {
    /// The wire form.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0; HEADER_LEN];
        for (chunk, field) in
            bytes
                .chunks_exact_mut(4)
                .zip([self.kind as u32, self.req_id, self.tx_id, self.len])
        {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        bytes
    }

    /// Parses and checks a header: a defined type and a length within
    /// [`XENSTORE_PAYLOAD_MAX`].
    pub fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Result<Self, DecodeError> {
        let word = |index: usize| {
            let mut field = [0; 4];
            field.copy_from_slice(&bytes[index * 4..index * 4 + 4]);
            u32::from_le_bytes(field)
        };
        let kind = word(0);
        let kind = MessageType::from_u32(kind).ok_or(DecodeError::UnknownType(kind))?;
        let len = word(3);
        if len as usize > XENSTORE_PAYLOAD_MAX {
            return Err(DecodeError::PayloadTooLarge(len));
        }
        Ok(Self {
            kind,
            req_id: word(1),
            tx_id: word(2),
            len,
        })
    }
}

/// xenstored's name for an error (`xsd_errors` in `xs_wire.h`), or `None`
/// for [`XsError::Protocol`], which is this side's own.
pub fn error_name(error: XsError) -> Option<&'static str> {
    Some(match error {
        XsError::Einval => "EINVAL",
        XsError::Eacces => "EACCES",
        XsError::Eexist => "EEXIST",
        XsError::Eisdir => "EISDIR",
        XsError::Enoent => "ENOENT",
        XsError::Enomem => "ENOMEM",
        XsError::Enospc => "ENOSPC",
        XsError::Eio => "EIO",
        XsError::Enotempty => "ENOTEMPTY",
        XsError::Enosys => "ENOSYS",
        XsError::Erofs => "EROFS",
        XsError::Ebusy => "EBUSY",
        XsError::Eagain => "EAGAIN",
        XsError::Eisconn => "EISCONN",
        XsError::E2big => "E2BIG",
        XsError::Eperm => "EPERM",
        XsError::Equota => "EQUOTA",
        XsError::Protocol => return None,
    })
}

/// Every error that has a xenstore name.
pub const NAMED_ERRORS: [XsError; 17] = [
    XsError::Einval,
    XsError::Eacces,
    XsError::Eexist,
    XsError::Eisdir,
    XsError::Enoent,
    XsError::Enomem,
    XsError::Enospc,
    XsError::Eio,
    XsError::Enotempty,
    XsError::Enosys,
    XsError::Erofs,
    XsError::Ebusy,
    XsError::Eagain,
    XsError::Eisconn,
    XsError::E2big,
    XsError::Eperm,
    XsError::Equota,
];

/// The error xenstored names `name`, if it is one of [`NAMED_ERRORS`].
pub fn parse_error_name(name: &str) -> Option<XsError> {
    NAMED_ERRORS
        .iter()
        .copied()
        .find(|error| error_name(*error) == Some(name))
}

fn access_letter(access: Access) -> u8 {
    match access {
        Access::None => b'n',
        Access::Read => b'r',
        Access::Write => b'w',
        Access::Both => b'b',
    }
}

/// Appends one permission in its wire form (`b0`), without the NUL.
pub fn encode_permission(permission: &Permission, out: &mut Vec<u8>) {
    out.push(access_letter(permission.access));
    out.extend_from_slice(alloc::format!("{}", permission.domid).as_bytes());
}

/// Parses one permission (`r5`): an access letter and a canonical decimal
/// domid up to 65535 (special ids such as `DOMID_SELF` are allowed here;
/// whoever acts on the permission judges them).
pub fn parse_permission(text: &[u8]) -> Result<Permission, DecodeError> {
    let (&letter, digits) = text.split_first().ok_or(DecodeError::BadPermission)?;
    let access = match letter {
        b'n' => Access::None,
        b'r' => Access::Read,
        b'w' => Access::Write,
        b'b' => Access::Both,
        _ => return Err(DecodeError::BadPermission),
    };
    let digits = core::str::from_utf8(digits).map_err(|_| DecodeError::BadPermission)?;
    let domid = value::parse_u16(digits).map_err(|_| DecodeError::BadPermission)?;
    Ok(Permission { domid, access })
}

/// A request from a client to xenstored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// Read a node's value.
    Read {
        /// The node.
        path: &'a str,
    },
    /// Write a node's value, creating it and its parents.
    Write {
        /// The node.
        path: &'a str,
        /// The value: raw bytes, no terminating NUL.
        value: &'a [u8],
    },
    /// Create a node if missing.
    Mkdir {
        /// The node.
        path: &'a str,
    },
    /// Remove a node and its children.
    Rm {
        /// The node.
        path: &'a str,
    },
    /// List a node's children.
    Directory {
        /// The node.
        path: &'a str,
    },
    /// Read a node's permissions.
    GetPerms {
        /// The node.
        path: &'a str,
    },
    /// Replace a node's permissions.
    SetPerms {
        /// The node.
        path: &'a str,
        /// Owner first, then the other entries; at least one.
        perms: Cow<'a, [Permission]>,
    },
    /// Watch a path and everything below it.
    Watch {
        /// The path, or a special `@...` name.
        path: &'a str,
        /// Echoed in every event of this watch.
        token: &'a str,
    },
    /// Remove a watch.
    Unwatch {
        /// The path the watch was set on.
        path: &'a str,
        /// The watch's token.
        token: &'a str,
    },
    /// Start a transaction (sent with `tx_id` 0).
    TransactionStart,
    /// End the transaction named in the header's `tx_id`.
    TransactionEnd {
        /// `true` commits (`T`), `false` discards (`F`).
        commit: bool,
    },
}

fn check_path(path: &str) -> Result<(), EncodeError> {
    check_string(path)?;
    let max = if path.starts_with('/') {
        XENSTORE_ABS_PATH_MAX
    } else {
        XENSTORE_REL_PATH_MAX
    };
    if path.len() > max {
        return Err(EncodeError::PathTooLong);
    }
    Ok(())
}

fn check_string(text: &str) -> Result<(), EncodeError> {
    if text.is_empty() {
        return Err(EncodeError::EmptyString);
    }
    if text.bytes().any(|b| b == 0) {
        return Err(EncodeError::EmbeddedNul);
    }
    Ok(())
}

fn push_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

/// Appends a header for the payload written after `start` by `body`,
/// checking the payload size; on error `out` is left as it was.
fn frame(
    out: &mut Vec<u8>,
    kind: MessageType,
    req_id: u32,
    tx_id: u32,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(error) = body(out) {
        out.truncate(start);
        return Err(error);
    }
    let len = out.len() - start - HEADER_LEN;
    if len > XENSTORE_PAYLOAD_MAX {
        out.truncate(start);
        return Err(EncodeError::PayloadTooLarge);
    }
    let header = Header {
        kind,
        req_id,
        tx_id,
        // Bounded by XENSTORE_PAYLOAD_MAX just above.
        len: len as u32,
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(())
}

/// Splits `payload` into exactly `N` NUL-terminated fields.
fn split_fields<const N: usize>(payload: &[u8]) -> Result<[&[u8]; N], DecodeError> {
    let mut fields = [&payload[..0]; N];
    let mut rest = payload;
    for field in &mut fields {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::MissingNul)?;
        *field = &rest[..end];
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(fields)
}

/// Splits a list of NUL-terminated strings (`<name>|*`).
fn split_list(payload: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let body = payload.strip_suffix(&[0]).ok_or(DecodeError::MissingNul)?;
    Ok(body.split(|&b| b == 0).collect())
}

fn text(bytes: &[u8]) -> Result<&str, DecodeError> {
    let text = core::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    if text.is_empty() {
        return Err(DecodeError::EmptyString);
    }
    Ok(text)
}

impl<'a> Request<'a> {
    /// The header type of this request.
    pub fn kind(&self) -> MessageType {
        match self {
            Self::Read { .. } => MessageType::Read,
            Self::Write { .. } => MessageType::Write,
            Self::Mkdir { .. } => MessageType::Mkdir,
            Self::Rm { .. } => MessageType::Rm,
            Self::Directory { .. } => MessageType::Directory,
            Self::GetPerms { .. } => MessageType::GetPerms,
            Self::SetPerms { .. } => MessageType::SetPerms,
            Self::Watch { .. } => MessageType::Watch,
            Self::Unwatch { .. } => MessageType::Unwatch,
            Self::TransactionStart => MessageType::TransactionStart,
            Self::TransactionEnd { .. } => MessageType::TransactionEnd,
        }
    }

    /// Appends the whole message (header and payload) to `out`. On error
    /// `out` is unchanged.
    pub fn encode(&self, req_id: u32, tx: TxId, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        // Watches are not part of transactions, and a transaction cannot
        // start inside another: xenstore.txt wants tx_id 0 for both.
        let tx_id = match self {
            Self::Watch { .. } | Self::Unwatch { .. } | Self::TransactionStart => 0,
            _ => tx.0,
        };
        frame(out, self.kind(), req_id, tx_id, |out| {
            match self {
                Self::Read { path }
                | Self::Mkdir { path }
                | Self::Rm { path }
                | Self::Directory { path }
                | Self::GetPerms { path } => {
                    check_path(path)?;
                    push_string(out, path);
                }
                Self::Write { path, value } => {
                    check_path(path)?;
                    if path.len() + 1 + value.len() > XENSTORE_PAYLOAD_MAX {
                        return Err(EncodeError::PayloadTooLarge);
                    }
                    push_string(out, path);
                    out.extend_from_slice(value);
                }
                Self::SetPerms { path, perms } => {
                    check_path(path)?;
                    if perms.is_empty() {
                        return Err(EncodeError::NoPermissions);
                    }
                    push_string(out, path);
                    for permission in perms.iter() {
                        encode_permission(permission, out);
                        out.push(0);
                    }
                }
                Self::Watch { path, token } | Self::Unwatch { path, token } => {
                    check_path(path)?;
                    check_string(token)?;
                    push_string(out, path);
                    push_string(out, token);
                }
                Self::TransactionStart => out.push(0),
                Self::TransactionEnd { commit } => {
                    out.extend_from_slice(if *commit { b"T\0" } else { b"F\0" })
                }
            }
            Ok(())
        })
    }

    /// Decodes a request's payload, as xenstored (or a simulator) would.
    pub fn decode(kind: MessageType, payload: &'a [u8]) -> Result<Self, DecodeError> {
        Ok(match kind {
            MessageType::Read
            | MessageType::Mkdir
            | MessageType::Rm
            | MessageType::Directory
            | MessageType::GetPerms => {
                let [path] = split_fields::<1>(payload)?;
                let path = text(path)?;
                match kind {
                    MessageType::Read => Self::Read { path },
                    MessageType::Mkdir => Self::Mkdir { path },
                    MessageType::Rm => Self::Rm { path },
                    MessageType::Directory => Self::Directory { path },
                    _ => Self::GetPerms { path },
                }
            }
            MessageType::Write => {
                let end = payload
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(DecodeError::MissingNul)?;
                Self::Write {
                    path: text(&payload[..end])?,
                    value: &payload[end + 1..],
                }
            }
            MessageType::SetPerms => {
                let mut fields = split_list(payload)?.into_iter();
                let path = text(fields.next().ok_or(DecodeError::MissingNul)?)?;
                let perms = fields
                    .map(parse_permission)
                    .collect::<Result<Vec<_>, _>>()?;
                if perms.is_empty() {
                    return Err(DecodeError::NoPermissions);
                }
                Self::SetPerms {
                    path,
                    perms: Cow::Owned(perms),
                }
            }
            MessageType::Watch | MessageType::Unwatch => {
                let [path, token] = split_fields::<2>(payload)?;
                let (path, token) = (text(path)?, text(token)?);
                if kind == MessageType::Watch {
                    Self::Watch { path, token }
                } else {
                    Self::Unwatch { path, token }
                }
            }
            MessageType::TransactionStart => {
                let [reserved] = split_fields::<1>(payload)?;
                if !reserved.is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                Self::TransactionStart
            }
            MessageType::TransactionEnd => match split_fields::<1>(payload)? {
                [b"T"] => Self::TransactionEnd { commit: true },
                [b"F"] => Self::TransactionEnd { commit: false },
                _ => return Err(DecodeError::BadCommitFlag),
            },
            other => return Err(DecodeError::UnexpectedType(other)),
        })
    }
}

/// The body of a reply from xenstored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `READ`: the value, raw.
    Value(Vec<u8>),
    /// `OK` to `WRITE`, `MKDIR`, `RM`, `SET_PERMS`, `WATCH`, `UNWATCH`,
    /// `TRANSACTION_END`.
    Ok,
    /// `DIRECTORY`: the children's names.
    Directory(Vec<String>),
    /// `GET_PERMS`: owner first.
    Perms(Vec<Permission>),
    /// `TRANSACTION_START`: the new transaction.
    TransactionStarted(TxId),
    /// `ERROR`: the request failed.
    Error(XsError),
}

impl Reply {
    /// Appends the whole reply to the request of type `request` to `out`.
    /// On error `out` is unchanged.
    pub fn encode(
        &self,
        request: MessageType,
        req_id: u32,
        tx_id: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let kind = match self {
            Self::Error(_) => MessageType::Error,
            _ => request,
        };
        frame(out, kind, req_id, tx_id, |out| {
            match self {
                Self::Value(value) => out.extend_from_slice(value),
                Self::Ok => out.extend_from_slice(b"OK\0"),
                Self::Directory(names) => {
                    for name in names {
                        check_string(name)?;
                        push_string(out, name);
                    }
                }
                Self::Perms(perms) => {
                    if perms.is_empty() {
                        return Err(EncodeError::NoPermissions);
                    }
                    for permission in perms {
                        encode_permission(permission, out);
                        out.push(0);
                    }
                }
                Self::TransactionStarted(tx) => {
                    push_string(out, &alloc::format!("{}", tx.0));
                }
                Self::Error(error) => {
                    push_string(out, error_name(*error).ok_or(EncodeError::UnnamedError)?);
                }
            }
            Ok(())
        })
    }

    /// Decodes the payload of a reply whose header type is `kind`.
    pub fn decode(kind: MessageType, payload: &[u8]) -> Result<Self, DecodeError> {
        Ok(match kind {
            MessageType::Error => {
                let [name] = split_fields::<1>(payload)?;
                let name = core::str::from_utf8(name).map_err(|_| DecodeError::UnknownErrorName)?;
                Self::Error(parse_error_name(name).ok_or(DecodeError::UnknownErrorName)?)
            }
            MessageType::Read => Self::Value(payload.to_vec()),
            MessageType::Write
            | MessageType::Mkdir
            | MessageType::Rm
            | MessageType::SetPerms
            | MessageType::Watch
            | MessageType::Unwatch
            | MessageType::TransactionEnd => match payload {
                b"OK\0" | b"OK" => Self::Ok,
                _ => return Err(DecodeError::NotOk),
            },
            MessageType::Directory => Self::Directory(
                split_list(payload)?
                    .into_iter()
                    .map(|name| text(name).map(String::from))
                    .collect::<Result<_, _>>()?,
            ),
            MessageType::GetPerms => {
                let perms = split_list(payload)?
                    .into_iter()
                    .map(parse_permission)
                    .collect::<Result<Vec<_>, _>>()?;
                if perms.is_empty() {
                    return Err(DecodeError::NoPermissions);
                }
                Self::Perms(perms)
            }
            MessageType::TransactionStart => {
                let [id] = split_fields::<1>(payload)?;
                let id = core::str::from_utf8(id).map_err(|_| DecodeError::BadTransactionId)?;
                match value::parse_u32(id) {
                    Ok(id) if id != 0 => Self::TransactionStarted(TxId(id)),
                    _ => return Err(DecodeError::BadTransactionId),
                }
            }
            other => return Err(DecodeError::UnexpectedType(other)),
        })
    }
}

/// A watch firing (`WATCH_EVENT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path that changed (relative if the watch was set relative).
    pub path: String,
    /// The token given when the watch was set.
    pub token: String,
}

impl WatchEvent {
    /// Appends the whole message (header with `req_id` and `tx_id` 0).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        frame(out, MessageType::WatchEvent, 0, 0, |out| {
            check_string(&self.path)?;
            check_string(&self.token)?;
            push_string(out, &self.path);
            push_string(out, &self.token);
            Ok(())
        })
    }

    /// Decodes a `WATCH_EVENT` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let [path, token] = split_fields::<2>(payload)?;
        Ok(Self {
            path: text(path)?.into(),
            token: text(token)?.into(),
        })
    }
}

/// One framed message: a checked header and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header; `header.len == payload.len()`.
    pub header: Header,
    /// The payload.
    pub payload: Vec<u8>,
}

/// What xenstored sent a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The reply to request `req_id`.
    Reply {
        /// The request this answers.
        req_id: u32,
        /// The header type: the request's type, or `Error`.
        kind: MessageType,
        /// The decoded body.
        reply: Reply,
    },
    /// A watch fired.
    WatchEvent(WatchEvent),
}

impl Message {
    /// Decodes a message sent by xenstored to a client.
    pub fn decode_incoming(&self) -> Result<Incoming, DecodeError> {
        match self.header.kind {
            MessageType::WatchEvent => Ok(Incoming::WatchEvent(WatchEvent::decode(&self.payload)?)),
            kind => Ok(Incoming::Reply {
                req_id: self.header.req_id,
                kind,
                reply: Reply::decode(kind, &self.payload)?,
            }),
        }
    }
}

/// Cuts a byte stream into [`Message`]s, whatever pieces the bytes arrive
/// in. Memory is bounded by one header and one maximal payload. After a
/// refused header the stream has lost its framing: every later call
/// returns [`DecodeError::Broken`] until [`reset`](Self::reset).
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    header: [u8; HEADER_LEN],
    header_filled: usize,
    current: Option<Header>,
    payload: Vec<u8>,
    broken: bool,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    /// A decoder at a message boundary.
    pub fn new() -> Self {
        Self {
            header: [0; HEADER_LEN],
            header_filled: 0,
            current: None,
            payload: Vec::new(),
            broken: false,
        }
    }

    /// Forgets any partial message and a previous failure.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Whether the decoder is between messages (no partial message held).
    pub fn at_boundary(&self) -> bool {
        !self.broken && self.header_filled == 0 && self.current.is_none()
    }

    /// Consumes bytes from the front of `input` until one message is
    /// complete (returned) or `input` is empty (`Ok(None)`).
    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Option<Message>, DecodeError> {
        if self.broken {
            return Err(DecodeError::Broken);
        }
        let header = match self.current {
            Some(header) => header,
            None => {
                let take = (HEADER_LEN - self.header_filled).min(input.len());
                self.header[self.header_filled..self.header_filled + take]
                    .copy_from_slice(&input[..take]);
                self.header_filled += take;
                *input = &input[take..];
                if self.header_filled < HEADER_LEN {
                    return Ok(None);
                }
                self.header_filled = 0;
                let header = match Header::from_bytes(&self.header) {
                    Ok(header) => header,
                    Err(error) => {
                        self.broken = true;
                        return Err(error);
                    }
                };
                self.payload = Vec::with_capacity(header.len as usize);
                self.current = Some(header);
                header
            }
        };
        let wanted = header.len as usize - self.payload.len();
        let take = wanted.min(input.len());
        self.payload.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.payload.len() < header.len as usize {
            return Ok(None);
        }
        self.current = None;
        Ok(Some(Message {
            header,
            payload: core::mem::take(&mut self.payload),
        }))
    }
}

#[cfg(test)]
mod tests;
