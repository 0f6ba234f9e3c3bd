//! netback's hand-written slot layouts and constants against the bindgen
//! types generated from Xen's own `io/netif.h` (`xen-abi`).

use core::mem::{offset_of, size_of};

use netback::wire::*;
use xen_abi as abi;

#[test]
fn slot_sizes_match_the_header() {
    assert_eq!(TX_SLOT_SIZE, abi::netif::TX_SLOT_SIZE);
    assert_eq!(RX_SLOT_SIZE, abi::netif::RX_SLOT_SIZE);
    assert_eq!(TX_SLOT_SIZE, size_of::<abi::netif_tx_request>());
    assert_eq!(TX_RESPONSE_SIZE, size_of::<abi::netif_tx_response>());
    assert_eq!(RX_SLOT_SIZE, size_of::<abi::netif_rx_request>());
    assert_eq!(RX_SLOT_SIZE, size_of::<abi::netif_rx_response>());
    assert_eq!(EXTRA_INFO_SIZE, size_of::<abi::netif_extra_info>());
}

#[test]
fn field_offsets_match_the_encoders() {
    let request = TxRequest {
        gref: 0x11223344,
        offset: 0x5566,
        flags: 0x7788,
        id: 0x99aa,
        size: 0xbbcc,
    }
    .encode();
    let at = |offset: usize| u16::from_le_bytes([request[offset], request[offset + 1]]);
    assert_eq!(at(offset_of!(abi::netif_tx_request, offset)), 0x5566);
    assert_eq!(at(offset_of!(abi::netif_tx_request, flags)), 0x7788);
    assert_eq!(at(offset_of!(abi::netif_tx_request, id)), 0x99aa);
    assert_eq!(at(offset_of!(abi::netif_tx_request, size)), 0xbbcc);
    assert_eq!(offset_of!(abi::netif_tx_request, gref), 0);

    let rx = RxRequest {
        id: 0x1234,
        gref: 0x55667788,
    }
    .encode();
    let gref_at = offset_of!(abi::netif_rx_request, gref);
    assert_eq!(
        u32::from_le_bytes(rx[gref_at..gref_at + 4].try_into().unwrap()),
        0x55667788
    );

    let response = RxResponse {
        id: 1,
        offset: 2,
        flags: 3,
        status: 4,
    }
    .encode();
    assert_eq!(response[offset_of!(abi::netif_rx_response, id)], 1);
    assert_eq!(response[offset_of!(abi::netif_rx_response, offset)], 2);
    assert_eq!(response[offset_of!(abi::netif_rx_response, flags)], 3);
    assert_eq!(response[offset_of!(abi::netif_rx_response, status)], 4);

    let tx = TxResponse { id: 9, status: 8 }.encode();
    assert_eq!(tx[offset_of!(abi::netif_tx_response, id)], 9);
    assert_eq!(tx[offset_of!(abi::netif_tx_response, status)], 8);

    let extra = ExtraInfo::gso(GsoKind::TcpV4, 0x0102).encode();
    let union_at = offset_of!(abi::netif_extra_info, u);
    let gso_size_at =
        union_at + offset_of!(abi::netif_extra_info__bindgen_ty_1__bindgen_ty_1, size);
    let gso_type_at =
        union_at + offset_of!(abi::netif_extra_info__bindgen_ty_1__bindgen_ty_1, type_);
    assert_eq!(extra[offset_of!(abi::netif_extra_info, type_)], 1);
    assert_eq!(extra[gso_size_at], 0x02);
    assert_eq!(extra[gso_size_at + 1], 0x01);
    assert_eq!(extra[gso_type_at], 1);
}

#[test]
fn constants_match_the_header() {
    assert_eq!(NETTXF_CSUM_BLANK, abi::NETTXF_csum_blank);
    assert_eq!(NETTXF_DATA_VALIDATED, abi::NETTXF_data_validated);
    assert_eq!(NETTXF_MORE_DATA, abi::NETTXF_more_data);
    assert_eq!(NETTXF_EXTRA_INFO, abi::NETTXF_extra_info);
    assert_eq!(
        u32::from(NETRXF_DATA_VALIDATED),
        abi::NETRXF_data_validated as u32
    );
    assert_eq!(u32::from(NETRXF_CSUM_BLANK), abi::NETRXF_csum_blank as u32);
    assert_eq!(u32::from(NETRXF_MORE_DATA), abi::NETRXF_more_data as u32);
    assert_eq!(u32::from(NETRXF_EXTRA_INFO), abi::NETRXF_extra_info as u32);
    assert_eq!(XEN_NETIF_EXTRA_TYPE_GSO, abi::XEN_NETIF_EXTRA_TYPE_GSO);
    assert_eq!(
        XEN_NETIF_EXTRA_TYPE_MAX as u32,
        abi::XEN_NETIF_EXTRA_TYPE_MAX as u32
    );
    assert_eq!(
        XEN_NETIF_EXTRA_FLAG_MORE as u32,
        abi::XEN_NETIF_EXTRA_FLAG_MORE as u32
    );
    assert_eq!(
        XEN_NETIF_GSO_TYPE_TCPV4 as u32,
        abi::XEN_NETIF_GSO_TYPE_TCPV4 as u32
    );
    assert_eq!(
        XEN_NETIF_GSO_TYPE_TCPV6 as u32,
        abi::XEN_NETIF_GSO_TYPE_TCPV6 as u32
    );
    assert_eq!(NETIF_RSP_NULL, abi::NETIF_RSP_NULL);
    assert_eq!(NETIF_RSP_OKAY as i32, abi::NETIF_RSP_OKAY as i32);
    assert_eq!(NETIF_RSP_ERROR as i32, abi::NETIF_RSP_ERROR as i32);
    assert_eq!(NETIF_RSP_DROPPED as i32, abi::NETIF_RSP_DROPPED as i32);
    assert_eq!(XEN_NETIF_NR_SLOTS_MIN as u32, abi::XEN_NETIF_NR_SLOTS_MIN);
    assert_eq!(XEN_NETIF_MAX_TX_SIZE as u32, abi::XEN_NETIF_MAX_TX_SIZE);
}

#[test]
fn control_ring_layout_and_constants_match_the_header() {
    use netback::control::*;
    use netback::hash::*;
    assert_eq!(CTRL_SLOT_SIZE, size_of::<abi::xen_netif_ctrl_request>());
    assert_eq!(
        CTRL_RESPONSE_SIZE,
        size_of::<abi::xen_netif_ctrl_response>()
    );
    assert_eq!(offset_of!(abi::xen_netif_ctrl_request, data), 4);
    assert_eq!(offset_of!(abi::xen_netif_ctrl_response, status), 4);
    assert_eq!(offset_of!(abi::xen_netif_ctrl_response, data), 8);
    assert_eq!(
        u32::from(CTRL_GET_HASH_FLAGS),
        abi::XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS
    );
    assert_eq!(
        u32::from(CTRL_SET_HASH_FLAGS),
        abi::XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS
    );
    assert_eq!(
        u32::from(CTRL_SET_HASH_KEY),
        abi::XEN_NETIF_CTRL_TYPE_SET_HASH_KEY
    );
    assert_eq!(
        u32::from(CTRL_GET_HASH_MAPPING_SIZE),
        abi::XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE
    );
    assert_eq!(
        u32::from(CTRL_SET_HASH_MAPPING_SIZE),
        abi::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE
    );
    assert_eq!(
        u32::from(CTRL_SET_HASH_MAPPING),
        abi::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING
    );
    assert_eq!(
        u32::from(CTRL_SET_HASH_ALGORITHM),
        abi::XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM
    );
    assert_eq!(CTRL_STATUS_SUCCESS, abi::XEN_NETIF_CTRL_STATUS_SUCCESS);
    assert_eq!(
        CTRL_STATUS_NOT_SUPPORTED,
        abi::XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED
    );
    assert_eq!(
        CTRL_STATUS_INVALID_PARAMETER,
        abi::XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        CTRL_STATUS_BUFFER_OVERFLOW,
        abi::XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW
    );
    assert_eq!(
        HASH_ALGORITHM_TOEPLITZ,
        abi::XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ
    );
    assert_eq!(HASH_TYPE_IPV4, abi::XEN_NETIF_CTRL_HASH_TYPE_IPV4);
    assert_eq!(HASH_TYPE_IPV4_TCP, abi::XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
    assert_eq!(HASH_TYPE_IPV6, abi::XEN_NETIF_CTRL_HASH_TYPE_IPV6);
    assert_eq!(HASH_TYPE_IPV6_TCP, abi::XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
}
