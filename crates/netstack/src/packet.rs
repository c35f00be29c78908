//! What a device sent, read just far enough to route it: IPv4 only, whole
//! packets only (fragments are refused: a device's MTU is known), and the
//! ports of TCP and UDP. Every length is checked before it is used.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket,
};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The transport of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A packet read far enough to route it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// TCP or UDP.
    pub proto: Proto,
    /// The device's end.
    pub src: SocketAddrV4,
    /// Where it is going.
    pub dst: SocketAddrV4,
    /// TCP: SYN set and ACK not (a connection's first packet).
    pub syn: bool,
    /// UDP: the payload's offset and length in the packet.
    pub payload: (usize, usize),
}

/// Why a packet is not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not IPv4, or shorter than its headers say.
    #[error("malformed or not IPv4")]
    Malformed,
    /// A fragment (devices send whole packets within their MTU).
    #[error("fragment")]
    Fragment,
    /// Neither TCP nor UDP nor an ICMP echo request.
    #[error("protocol not carried")]
    Protocol,
    /// From an address that is not a device's.
    #[error("source address outside the devices' range")]
    Spoofed,
    /// To a broadcast, multicast or unspecified address.
    #[error("destination is not a unicast address")]
    Destination,
    /// A table is full (flows, pending connections, per device or in all).
    #[error("flow table full")]
    Full,
    /// Larger than the interface's MTU.
    #[error("larger than the MTU")]
    Oversized,
}

/// Reads `bytes` as an IPv4 TCP or UDP packet.
pub fn parse(bytes: &[u8]) -> Result<Parsed, Refusal> {
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| Refusal::Malformed)?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(Refusal::Fragment);
    }
    if !ip.verify_checksum() {
        return Err(Refusal::Malformed);
    }
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    if !unicast(dst) {
        return Err(Refusal::Destination);
    }
    let header = usize::from(ip.header_len());
    let total = usize::from(ip.total_len());
    let body = &bytes[header..total];
    match ip.next_header() {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(body).map_err(|_| Refusal::Malformed)?;
            Ok(Parsed {
                proto: Proto::Tcp,
                src: SocketAddrV4::new(src, tcp.src_port()),
                dst: SocketAddrV4::new(dst, tcp.dst_port()),
                syn: tcp.syn() && !tcp.ack(),
                payload: (0, 0),
            })
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(body).map_err(|_| Refusal::Malformed)?;
            let len = usize::from(udp.len());
            Ok(Parsed {
                proto: Proto::Udp,
                src: SocketAddrV4::new(src, udp.src_port()),
                dst: SocketAddrV4::new(dst, udp.dst_port()),
                syn: false,
                payload: (header + 8, len - 8),
            })
        }
        _ => Err(Refusal::Protocol),
    }
}

/// An ICMP echo request ("ping"), read far enough to decide on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    /// The device's address.
    pub src: Ipv4Addr,
    /// The address pinged.
    pub dst: Ipv4Addr,
}

/// Reads `bytes` as an IPv4 ICMP echo request: whole, checksums right, to
/// a unicast address. `None` for anything else.
pub fn parse_echo(bytes: &[u8]) -> Option<Echo> {
    let ip = Ipv4Packet::new_checked(bytes).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 || ip.next_header() != IpProtocol::Icmp {
        return None;
    }
    let caps = ChecksumCapabilities::default();
    let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    match Icmpv4Repr::parse(&icmp, &caps).ok()? {
        Icmpv4Repr::EchoRequest { .. } if unicast(ip_repr.dst_addr) => Some(Echo {
            src: ip_repr.src_addr,
            dst: ip_repr.dst_addr,
        }),
        _ => None,
    }
}

/// The echo reply to `request` (an echo request [`parse_echo`] read):
/// from the address pinged, with the request's identifier, sequence number
/// and data.
pub fn echo_reply(request: &[u8]) -> Option<Vec<u8>> {
    let caps = ChecksumCapabilities::default();
    let ip = Ipv4Packet::new_checked(request).ok()?;
    let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
    let Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    } = Icmpv4Repr::parse(&icmp, &caps).ok()?
    else {
        return None;
    };
    let reply = Icmpv4Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    Some(icmp_packet(ip_repr.dst_addr, ip_repr.src_addr, &reply))
}

/// An IPv4 ICMP packet from `src` to `dst`, checksums filled in.
pub fn icmp_packet(src: Ipv4Addr, dst: Ipv4Addr, icmp: &Icmpv4Repr<'_>) -> Vec<u8> {
    ipv4_packet(src, dst, IpProtocol::Icmp, icmp.buffer_len(), |payload| {
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(payload),
            &ChecksumCapabilities::default(),
        );
    })
}

/// An IPv4 packet from `src` to `dst` carrying `len` bytes of `proto`,
/// which `fill` writes; the header's checksum filled in.
pub(crate) fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: len,
        hop_limit: 64,
    };
    let mut bytes = vec![0u8; ip.buffer_len() + len];
    let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    fill(packet.payload_mut());
    bytes
}

fn unicast(a: Ipv4Addr) -> bool {
    !(a.is_broadcast() || a.is_multicast() || a.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_foreign_packets_are_refused() {
        assert_eq!(parse(&[]), Err(Refusal::Malformed));
        assert_eq!(parse(&[0x60; 40]), Err(Refusal::Malformed));
        assert_eq!(parse(&[0x45; 19]), Err(Refusal::Malformed));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_parsed_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
            if parse_echo(&bytes).is_some() {
                proptest::prop_assert!(echo_reply(&bytes).is_some());
            }
        }
    }
}
