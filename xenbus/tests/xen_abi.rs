//! The codec's and the ring client's view of `xen/io/xs_wire.h`, compared
//! with what bindgen (and so clang) makes of the installed header.

use core::mem::{offset_of, size_of};

use xen_abi as abi;
use xenbus::ring;
use xenbus::wire::{self, Header, MessageType};

#[test]
fn ring_page_layout() {
    type Interface = abi::xenstore_domain_interface;
    assert_eq!(offset_of!(Interface, req), ring::REQ_OFFSET);
    assert_eq!(offset_of!(Interface, rsp), ring::RSP_OFFSET);
    assert_eq!(offset_of!(Interface, req_cons), ring::REQ_CONS_OFFSET);
    assert_eq!(offset_of!(Interface, req_prod), ring::REQ_PROD_OFFSET);
    assert_eq!(offset_of!(Interface, rsp_cons), ring::RSP_CONS_OFFSET);
    assert_eq!(offset_of!(Interface, rsp_prod), ring::RSP_PROD_OFFSET);
    assert_eq!(
        offset_of!(Interface, server_features),
        ring::SERVER_FEATURES_OFFSET
    );
    assert_eq!(offset_of!(Interface, connection), ring::CONNECTION_OFFSET);
    assert_eq!(offset_of!(Interface, error), ring::ERROR_OFFSET);
    assert_eq!(size_of::<Interface>(), ring::INTERFACE_LEN);
}

#[test]
fn constants() {
    assert_eq!(abi::XENSTORE_RING_SIZE as usize, ring::XENSTORE_RING_SIZE);
    assert_eq!(
        abi::XENSTORE_PAYLOAD_MAX as usize,
        wire::XENSTORE_PAYLOAD_MAX
    );
    assert_eq!(
        abi::XENSTORE_ABS_PATH_MAX as usize,
        wire::XENSTORE_ABS_PATH_MAX
    );
    assert_eq!(
        abi::XENSTORE_REL_PATH_MAX as usize,
        wire::XENSTORE_REL_PATH_MAX
    );
    assert_eq!(
        abi::XENSTORE_SERVER_FEATURE_RECONNECTION,
        ring::XENSTORE_SERVER_FEATURE_RECONNECTION
    );
    assert_eq!(
        abi::XENSTORE_SERVER_FEATURE_ERROR,
        ring::XENSTORE_SERVER_FEATURE_ERROR
    );
    assert_eq!(abi::XENSTORE_CONNECTED, ring::XENSTORE_CONNECTED);
    assert_eq!(abi::XENSTORE_RECONNECT, ring::XENSTORE_RECONNECT);
    assert_eq!(abi::XS_TYPE_COUNT, wire::XS_TYPE_COUNT);
}

#[test]
fn message_types() {
    let pairs = [
        (abi::XS_CONTROL, MessageType::Control),
        (abi::XS_DIRECTORY, MessageType::Directory),
        (abi::XS_READ, MessageType::Read),
        (abi::XS_GET_PERMS, MessageType::GetPerms),
        (abi::XS_WATCH, MessageType::Watch),
        (abi::XS_UNWATCH, MessageType::Unwatch),
        (abi::XS_TRANSACTION_START, MessageType::TransactionStart),
        (abi::XS_TRANSACTION_END, MessageType::TransactionEnd),
        (abi::XS_INTRODUCE, MessageType::Introduce),
        (abi::XS_RELEASE, MessageType::Release),
        (abi::XS_GET_DOMAIN_PATH, MessageType::GetDomainPath),
        (abi::XS_WRITE, MessageType::Write),
        (abi::XS_MKDIR, MessageType::Mkdir),
        (abi::XS_RM, MessageType::Rm),
        (abi::XS_SET_PERMS, MessageType::SetPerms),
        (abi::XS_WATCH_EVENT, MessageType::WatchEvent),
        (abi::XS_ERROR, MessageType::Error),
        (
            abi::XS_IS_DOMAIN_INTRODUCED,
            MessageType::IsDomainIntroduced,
        ),
        (abi::XS_RESUME, MessageType::Resume),
        (abi::XS_SET_TARGET, MessageType::SetTarget),
        (abi::XS_RESET_WATCHES, MessageType::ResetWatches),
        (abi::XS_DIRECTORY_PART, MessageType::DirectoryPart),
    ];
    assert_eq!(pairs.len(), MessageType::ALL.len());
    for (number, kind) in pairs {
        assert_eq!(kind as u32, number, "{kind:?}");
        assert_eq!(MessageType::from_u32(number), Some(kind));
    }
    assert_eq!(MessageType::from_u32(abi::XS_INVALID), None);
}

#[test]
fn header_layout() {
    type Sockmsg = abi::xsd_sockmsg;
    assert_eq!(size_of::<Sockmsg>(), wire::HEADER_LEN);
    let bytes = Header {
        kind: MessageType::Write,
        req_id: 0x0102_0304,
        tx_id: 0x0506_0708,
        len: 0x0009,
    }
    .to_bytes();
    let field = |offset: usize| u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap());
    assert_eq!(field(offset_of!(Sockmsg, type_)), abi::XS_WRITE);
    assert_eq!(field(offset_of!(Sockmsg, req_id)), 0x0102_0304);
    assert_eq!(field(offset_of!(Sockmsg, tx_id)), 0x0506_0708);
    assert_eq!(field(offset_of!(Sockmsg, len)), 9);
}
