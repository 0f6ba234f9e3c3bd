//! Ethernet frames inside the backend, and the offloads a receiver may or
//! may not take: checksum fill-in and TCP segmentation in software.
//!
//! A frame from a guest may carry a blank TCP/UDP checksum
//! (`NETTXF_csum_blank`) and may be a TCP super-packet of up to 64 KiB with
//! a segment size (GSO). Before a frame reaches a receiver that cannot take
//! it that way (a frontend with `feature-no-csum-offload`, one without
//! `feature-gso-tcpv4`, or an uplink without offloads), [`adapt_for`] fills
//! in the checksum or cuts the frame into MSS-sized segments, each with
//! complete checksums. Headers are parsed from the frame's own bytes, which
//! the guest controls: every length is checked against the frame, and a
//! frame whose headers cannot be understood is refused rather than guessed
//! at.

use alloc::vec::Vec;

use crate::wire::GsoKind;

/// A MAC address.
pub type MacAddress = [u8; 6];

/// The checksum state of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumState {
    /// The checksum in the frame is complete (or the protocol has none).
    Complete,
    /// The sender vouches for the data (`data_validated`).
    Validated,
    /// The TCP/UDP checksum field is blank and must be filled in before the
    /// frame reaches a receiver that checks it.
    Blank,
}

/// GSO metadata: the frame is a TCP super-packet to be cut into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gso {
    /// TCP over IPv4 or IPv6.
    pub kind: GsoKind,
    /// Largest TCP payload per segment (the MSS).
    pub segment_size: u16,
}

/// An Ethernet frame (no FCS) with its offload metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The bytes, from the destination MAC on.
    pub data: Vec<u8>,
    /// Checksum state.
    pub checksum: ChecksumState,
    /// Segmentation offload, if the frame is a super-packet.
    pub gso: Option<Gso>,
}

impl Frame {
    /// A plain frame with complete checksums.
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            checksum: ChecksumState::Complete,
            gso: None,
        }
    }

    /// The destination MAC, if the frame is long enough to have one.
    pub fn destination(&self) -> Option<MacAddress> {
        self.data.get(0..6).map(|bytes| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(bytes);
            mac
        })
    }

    /// The source MAC, if the frame is long enough to have one.
    pub fn source(&self) -> Option<MacAddress> {
        self.data.get(6..12).map(|bytes| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(bytes);
            mac
        })
    }

    /// A hash of the flow (addresses and ports), to spread frames over a
    /// frontend's queues while keeping each flow on one queue.
    pub fn flow_hash(&self) -> u32 {
        // FNV-1a over the MACs and, where present, the IP addresses and ports.
        let mut hash: u32 = 0x811c_9dc5;
        let mut feed = |bytes: &[u8]| {
            for &byte in bytes {
                hash ^= u32::from(byte);
                hash = hash.wrapping_mul(0x0100_0193);
            }
        };
        feed(self.data.get(0..12).unwrap_or(&[]));
        if let Ok(headers) = Headers::parse(&self.data) {
            feed(&self.data[headers.address_range()]);
            if let Some(ports) = self.data.get(headers.l4_offset..headers.l4_offset + 4) {
                feed(ports);
            }
        }
        hash
    }
}

/// What a receiver can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// Accepts IPv4 TCP/UDP frames with a blank checksum.
    pub checksum_ipv4: bool,
    /// Accepts IPv6 TCP/UDP frames with a blank checksum.
    pub checksum_ipv6: bool,
    /// Accepts TCPv4 super-packets.
    pub gso_tcpv4: bool,
    /// Accepts TCPv6 super-packets.
    pub gso_tcpv6: bool,
}

impl Offloads {
    /// A receiver that takes nothing but complete, MTU-sized frames.
    pub const NONE: Offloads = Offloads {
        checksum_ipv4: false,
        checksum_ipv6: false,
        gso_tcpv4: false,
        gso_tcpv6: false,
    };

    /// A receiver that takes everything.
    pub const ALL: Offloads = Offloads {
        checksum_ipv4: true,
        checksum_ipv6: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
    };
}

/// Why a frame could not be adapted for a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// The frame is not Ethernet carrying IPv4 or IPv6.
    NotIp,
    /// The IP header is truncated or its lengths are inconsistent.
    BadIpHeader,
    /// The frame is an IP fragment, which has no L4 header to fill in.
    Fragment,
    /// The IPv6 extension header chain is too long or truncated.
    BadExtensionHeaders,
    /// The transport protocol is neither TCP nor UDP.
    NotTcpOrUdp,
    /// The TCP or UDP header is truncated.
    BadTransportHeader,
    /// The GSO kind does not match the frame's IP version, or it is not TCP.
    GsoMismatch,
}

impl OffloadError {
    /// The message for logs.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotIp => "frame with a blank checksum is not IPv4 or IPv6",
            Self::BadIpHeader => "IP header truncated or inconsistent",
            Self::Fragment => "IP fragment with a blank checksum",
            Self::BadExtensionHeaders => "IPv6 extension headers truncated or too many",
            Self::NotTcpOrUdp => "blank checksum on a protocol other than TCP or UDP",
            Self::BadTransportHeader => "TCP or UDP header truncated",
            Self::GsoMismatch => "GSO type does not match the frame",
        }
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTOCOL_TCP: u8 = 6;
const PROTOCOL_UDP: u8 = 17;
/// IPv6 extension headers walked before giving up.
const MAX_IPV6_EXTENSION_HEADERS: usize = 4;

/// The offsets of a TCP or UDP frame's headers, all checked against the
/// frame's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Headers {
    ipv6: bool,
    ip_offset: usize,
    /// One past the last byte the IP header's length field covers.
    ip_end: usize,
    l4_offset: usize,
    protocol: u8,
}

impl Headers {
    fn parse(data: &[u8]) -> Result<Self, OffloadError> {
        let read16 = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
        };
        let mut ethertype = read16(12).ok_or(OffloadError::NotIp)?;
        let mut ip_offset = 14;
        if ethertype == ETHERTYPE_VLAN {
            ethertype = read16(16).ok_or(OffloadError::NotIp)?;
            ip_offset = 18;
        }
        match ethertype {
            ETHERTYPE_IPV4 => {
                let version_ihl = *data.get(ip_offset).ok_or(OffloadError::BadIpHeader)?;
                let header_len = usize::from(version_ihl & 0x0f) * 4;
                if version_ihl >> 4 != 4 || header_len < 20 {
                    return Err(OffloadError::BadIpHeader);
                }
                let total = usize::from(read16(ip_offset + 2).ok_or(OffloadError::BadIpHeader)?);
                let ip_end = ip_offset + total;
                if total < header_len || ip_end > data.len() {
                    return Err(OffloadError::BadIpHeader);
                }
                let fragment = read16(ip_offset + 6).ok_or(OffloadError::BadIpHeader)?;
                // More-fragments bit or a non-zero fragment offset.
                if fragment & 0x3fff != 0 {
                    return Err(OffloadError::Fragment);
                }
                Ok(Self {
                    ipv6: false,
                    ip_offset,
                    ip_end,
                    l4_offset: ip_offset + header_len,
                    protocol: data[ip_offset + 9],
                })
            }
            ETHERTYPE_IPV6 => {
                if data.len() < ip_offset + 40 || data[ip_offset] >> 4 != 6 {
                    return Err(OffloadError::BadIpHeader);
                }
                let payload = usize::from(read16(ip_offset + 4).ok_or(OffloadError::BadIpHeader)?);
                let ip_end = ip_offset + 40 + payload;
                if ip_end > data.len() {
                    return Err(OffloadError::BadIpHeader);
                }
                let mut next = data[ip_offset + 6];
                let mut offset = ip_offset + 40;
                let mut walked = 0;
                loop {
                    match next {
                        // Hop-by-hop, routing, destination options.
                        0 | 43 | 60 => {
                            walked += 1;
                            if walked > MAX_IPV6_EXTENSION_HEADERS || offset + 8 > ip_end {
                                return Err(OffloadError::BadExtensionHeaders);
                            }
                            next = data[offset];
                            offset += (usize::from(data[offset + 1]) + 1) * 8;
                            if offset > ip_end {
                                return Err(OffloadError::BadExtensionHeaders);
                            }
                        }
                        44 => return Err(OffloadError::Fragment),
                        _ => break,
                    }
                }
                Ok(Self {
                    ipv6: true,
                    ip_offset,
                    ip_end,
                    l4_offset: offset,
                    protocol: next,
                })
            }
            _ => Err(OffloadError::NotIp),
        }
    }

    fn address_range(&self) -> core::ops::Range<usize> {
        if self.ipv6 {
            self.ip_offset + 8..self.ip_offset + 40
        } else {
            self.ip_offset + 12..self.ip_offset + 20
        }
    }

    /// Offset of the checksum field in the L4 header, and the header's
    /// minimum length.
    fn checksum_field(&self) -> Result<(usize, usize), OffloadError> {
        match self.protocol {
            PROTOCOL_TCP => Ok((16, 20)),
            PROTOCOL_UDP => Ok((6, 8)),
            _ => Err(OffloadError::NotTcpOrUdp),
        }
    }
}

/// Adds `bytes` as big-endian 16-bit words to a one's-complement sum.
fn sum_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    // Fold often enough that 64 KiB of input cannot overflow.
    (sum & 0xffff) + (sum >> 16)
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The internet checksum (RFC 1071) of `bytes`.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    fold(sum_words(0, bytes))
}

/// Computes and writes the TCP/UDP checksum of a frame whose headers are
/// `headers`, over the L4 bytes up to the end the IP header states.
fn write_l4_checksum(data: &mut [u8], headers: &Headers) -> Result<(), OffloadError> {
    let (field, min_len) = headers.checksum_field()?;
    let l4_len = headers
        .ip_end
        .checked_sub(headers.l4_offset)
        .ok_or(OffloadError::BadTransportHeader)?;
    if l4_len < min_len {
        return Err(OffloadError::BadTransportHeader);
    }
    if headers.protocol == PROTOCOL_TCP {
        let data_offset = usize::from(data[headers.l4_offset + 12] >> 4) * 4;
        if data_offset < 20 || data_offset > l4_len {
            return Err(OffloadError::BadTransportHeader);
        }
    }
    let at = headers.l4_offset + field;
    data[at] = 0;
    data[at + 1] = 0;
    let mut sum = sum_words(0, &data[headers.address_range()]);
    sum += u32::from(headers.protocol);
    sum += (l4_len as u32) & 0xffff;
    sum += (l4_len as u32) >> 16;
    sum = sum_words(sum, &data[headers.l4_offset..headers.ip_end]);
    let mut checksum = fold(sum);
    if headers.protocol == PROTOCOL_UDP && checksum == 0 {
        // RFC 768: a computed zero is sent as all ones.
        checksum = 0xffff;
    }
    data[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
    Ok(())
}

/// Fills in the blank TCP/UDP checksum of `frame` and marks it complete.
pub fn fill_checksum(frame: &mut Frame) -> Result<(), OffloadError> {
    let headers = Headers::parse(&frame.data)?;
    write_l4_checksum(&mut frame.data, &headers)?;
    frame.checksum = ChecksumState::Complete;
    Ok(())
}

/// Checks the TCP/UDP checksum of a frame (used by tests and the mock
/// frontends to verify what was delivered).
pub fn verify_checksum(data: &[u8]) -> Result<bool, OffloadError> {
    let headers = Headers::parse(data)?;
    let mut copy = data.to_vec();
    let (field, _) = headers.checksum_field()?;
    let at = headers.l4_offset + field;
    let stored = data
        .get(at..at + 2)
        .ok_or(OffloadError::BadTransportHeader)?;
    let stored = u16::from_be_bytes([stored[0], stored[1]]);
    write_l4_checksum(&mut copy, &headers)?;
    let computed = u16::from_be_bytes([copy[at], copy[at + 1]]);
    Ok(stored == computed)
}

/// Cuts a TCP super-packet into segments of at most `gso.segment_size`
/// payload bytes, each with complete IP and TCP checksums, and passes them
/// to `emit` in order. Sequence numbers advance, IPv4 ids count up, FIN and
/// PSH stay on the last segment and CWR on the first, as a NIC's TSO does.
pub fn segment(frame: &Frame, gso: Gso, mut emit: impl FnMut(Frame)) -> Result<(), OffloadError> {
    let data = &frame.data;
    let headers = Headers::parse(data)?;
    if headers.protocol != PROTOCOL_TCP || headers.ipv6 != (gso.kind == GsoKind::TcpV6) {
        return Err(OffloadError::GsoMismatch);
    }
    let l4_len = headers
        .ip_end
        .checked_sub(headers.l4_offset)
        .ok_or(OffloadError::BadTransportHeader)?;
    if l4_len < 20 {
        return Err(OffloadError::BadTransportHeader);
    }
    let tcp_header_len = usize::from(data[headers.l4_offset + 12] >> 4) * 4;
    if tcp_header_len < 20 || tcp_header_len > l4_len {
        return Err(OffloadError::BadTransportHeader);
    }
    let header_end = headers.l4_offset + tcp_header_len;
    let payload = &data[header_end..headers.ip_end];
    let mss = usize::from(gso.segment_size.max(1));
    let sequence = u32::from_be_bytes([
        data[headers.l4_offset + 4],
        data[headers.l4_offset + 5],
        data[headers.l4_offset + 6],
        data[headers.l4_offset + 7],
    ]);
    let ipv4_id = u16::from_be_bytes([data[headers.ip_offset + 4], data[headers.ip_offset + 5]]);
    let tcp_flags = data[headers.l4_offset + 13];
    let count = payload.len().div_ceil(mss).max(1);
    for index in 0..count {
        let start = index * mss;
        let chunk = &payload[start.min(payload.len())..(start + mss).min(payload.len())];
        let mut out = Vec::with_capacity(header_end + chunk.len());
        out.extend_from_slice(&data[..header_end]);
        out.extend_from_slice(chunk);
        let ip = headers.ip_offset;
        let l4 = headers.l4_offset;
        if headers.ipv6 {
            let payload_len = (header_end - ip - 40 + chunk.len()) as u16;
            out[ip + 4..ip + 6].copy_from_slice(&payload_len.to_be_bytes());
        } else {
            let total = (header_end - ip + chunk.len()) as u16;
            out[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            let id = ipv4_id.wrapping_add(index as u16);
            out[ip + 4..ip + 6].copy_from_slice(&id.to_be_bytes());
            out[ip + 10] = 0;
            out[ip + 11] = 0;
            let header_checksum = internet_checksum(&out[ip..l4]);
            out[ip + 10..ip + 12].copy_from_slice(&header_checksum.to_be_bytes());
        }
        let segment_sequence = sequence.wrapping_add(start as u32);
        out[l4 + 4..l4 + 8].copy_from_slice(&segment_sequence.to_be_bytes());
        let mut flags = tcp_flags;
        if index + 1 != count {
            flags &= !(0x01 | 0x08); // FIN, PSH
        }
        if index != 0 {
            flags &= !0x80; // CWR
        }
        out[l4 + 13] = flags;
        let segment_headers = Headers {
            ip_end: out.len(),
            ..headers
        };
        write_l4_checksum(&mut out, &segment_headers)?;
        emit(Frame::new(out));
    }
    Ok(())
}

/// Makes `frame` fit what `offloads` says the receiver takes, passing the
/// result (the frame itself, or its segments) to `emit`.
pub fn adapt_for(
    mut frame: Frame,
    offloads: &Offloads,
    mut emit: impl FnMut(Frame),
) -> Result<(), OffloadError> {
    if let Some(gso) = frame.gso {
        let takes_gso = match gso.kind {
            GsoKind::TcpV4 => offloads.gso_tcpv4 && offloads.checksum_ipv4,
            GsoKind::TcpV6 => offloads.gso_tcpv6 && offloads.checksum_ipv6,
        };
        if takes_gso {
            emit(frame);
            return Ok(());
        }
        // A super-packet no larger than one segment only needs its checksum.
        return segment(&frame, gso, emit);
    }
    if frame.checksum == ChecksumState::Blank {
        let ipv6 = Headers::parse(&frame.data)?.ipv6;
        let takes_blank = if ipv6 {
            offloads.checksum_ipv6
        } else {
            offloads.checksum_ipv4
        };
        if !takes_blank {
            fill_checksum(&mut frame)?;
        }
    }
    emit(frame);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    /// Builds an Ethernet + IPv4/IPv6 + TCP/UDP frame with `payload_len`
    /// bytes of patterned payload and a complete checksum.
    pub fn ip_frame(ipv6: bool, protocol: u8, payload_len: usize) -> Vec<u8> {
        let mut data = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        let l4_header = if protocol == PROTOCOL_TCP { 20 } else { 8 };
        let l4_len = l4_header + payload_len;
        if ipv6 {
            data.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            data.extend_from_slice(&[0x60, 0, 0, 0]);
            data.extend_from_slice(&(l4_len as u16).to_be_bytes());
            data.extend_from_slice(&[protocol, 64]);
            data.extend((0..32).map(|i| i as u8));
        } else {
            data.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            data.extend_from_slice(&[0x45, 0]);
            data.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            data.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, protocol, 0, 0]);
            data.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            let checksum = internet_checksum(&data[14..34]);
            data[24..26].copy_from_slice(&checksum.to_be_bytes());
        }
        let l4 = data.len();
        data.extend_from_slice(&[0x30, 0x39, 0x00, 0x50]);
        if protocol == PROTOCOL_TCP {
            data.extend_from_slice(&[0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, 0x19, 0xff, 0xff]);
            data.extend_from_slice(&[0, 0, 0, 0]);
        } else {
            data.extend_from_slice(&(l4_len as u16).to_be_bytes());
            data.extend_from_slice(&[0, 0]);
        }
        data.extend((0..payload_len).map(|i| (i * 7 + 3) as u8));
        let mut frame = Frame::new(data);
        fill_checksum(&mut frame).unwrap();
        assert_eq!(frame.data.len(), l4 + l4_len);
        frame.data
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn blank_checksums_are_filled_for_every_protocol() {
        for ipv6 in [false, true] {
            for protocol in [PROTOCOL_TCP, PROTOCOL_UDP] {
                for payload in [0, 1, 100, 1459] {
                    let good = ip_frame(ipv6, protocol, payload);
                    assert_eq!(verify_checksum(&good), Ok(true));
                    let mut blank = good.clone();
                    let headers = Headers::parse(&blank).unwrap();
                    let (field, _) = headers.checksum_field().unwrap();
                    blank[headers.l4_offset + field] ^= 0x5a;
                    assert_eq!(verify_checksum(&blank), Ok(false));
                    let mut frame = Frame {
                        data: blank,
                        checksum: ChecksumState::Blank,
                        gso: None,
                    };
                    adapt_for(frame.clone(), &Offloads::ALL, |out| {
                        assert_eq!(out.checksum, ChecksumState::Blank)
                    })
                    .unwrap();
                    let mut delivered = Vec::new();
                    adapt_for(frame.clone(), &Offloads::NONE, |out| delivered.push(out)).unwrap();
                    assert_eq!(delivered.len(), 1);
                    assert_eq!(delivered[0].data, good);
                    fill_checksum(&mut frame).unwrap();
                    assert_eq!(frame.data, good);
                }
            }
        }
    }

    #[test]
    fn unparseable_blank_frames_are_refused() {
        let mut frame = Frame {
            data: vec![0; 60],
            checksum: ChecksumState::Blank,
            gso: None,
        };
        assert_eq!(fill_checksum(&mut frame), Err(OffloadError::NotIp));
        let mut truncated = ip_frame(false, PROTOCOL_TCP, 10);
        truncated.truncate(40);
        frame.data = truncated;
        assert_eq!(fill_checksum(&mut frame), Err(OffloadError::BadIpHeader));
        let mut fragment = ip_frame(false, PROTOCOL_UDP, 10);
        fragment[20] = 0x20; // more fragments
        frame.data = fragment;
        assert_eq!(fill_checksum(&mut frame), Err(OffloadError::Fragment));
        let mut icmp = ip_frame(false, PROTOCOL_UDP, 10);
        icmp[23] = 1;
        frame.data = icmp;
        assert_eq!(fill_checksum(&mut frame), Err(OffloadError::NotTcpOrUdp));
    }

    #[test]
    fn segmentation_reassembles_to_the_original_stream() {
        for ipv6 in [false, true] {
            let payload_len = 65535 - 20 - 40 - 14;
            let big = ip_frame(ipv6, PROTOCOL_TCP, payload_len);
            let kind = if ipv6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 };
            let gso = Gso {
                kind,
                segment_size: 1448,
            };
            let frame = Frame {
                data: big.clone(),
                checksum: ChecksumState::Blank,
                gso: Some(gso),
            };
            let mut segments = Vec::new();
            adapt_for(frame, &Offloads::NONE, |out| segments.push(out)).unwrap();
            assert_eq!(segments.len(), payload_len.div_ceil(1448));
            let header_len = if ipv6 { 14 + 40 + 20 } else { 14 + 20 + 20 };
            let mut stream = Vec::new();
            for (index, segment) in segments.iter().enumerate() {
                assert!(segment.data.len() <= header_len + 1448);
                assert_eq!(verify_checksum(&segment.data), Ok(true));
                if !ipv6 {
                    assert_eq!(internet_checksum(&segment.data[14..34]), 0);
                }
                let l4 = header_len - 20;
                let sequence = u32::from_be_bytes(segment.data[l4 + 4..l4 + 8].try_into().unwrap());
                assert_eq!(sequence, 0x1000 + (index * 1448) as u32);
                stream.extend_from_slice(&segment.data[header_len..]);
            }
            assert_eq!(stream, big[header_len..]);
        }
    }

    #[test]
    fn gso_type_must_match_the_frame() {
        let frame = Frame {
            data: ip_frame(false, PROTOCOL_TCP, 3000),
            checksum: ChecksumState::Blank,
            gso: Some(Gso {
                kind: GsoKind::TcpV6,
                segment_size: 1000,
            }),
        };
        assert_eq!(
            adapt_for(frame, &Offloads::NONE, |_| {}),
            Err(OffloadError::GsoMismatch)
        );
    }
}
