//! A hostile device: it speaks WireGuard properly (gotatun's `Tunn`, the
//! same protocol code as the stock apps) and then sends whatever IP packets
//! a test builds — spoofed sources, destinations outside its routes, floods
//! of SYNs, fragments, packets larger than the MTU.

use base64::Engine as _;
use bytes::BytesMut;
use gotatun::noise::index_table::IndexTable;
use gotatun::noise::rate_limiter::RateLimiter;
use gotatun::noise::{Tunn, TunnResult};
use gotatun::packet::{Packet, WgKind};
use gotatun::x25519::{PublicKey, StaticSecret};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A new key pair: the private key (for [`FakeDevice::connect`]) and the
/// public key in base64 (for `POST /api/v1/devices`).
pub fn key_pair() -> ([u8; 32], String) {
    let private: [u8; 32] = rand::random();
    let public = PublicKey::from(&StaticSecret::from(private));
    (
        private,
        base64::engine::general_purpose::STANDARD.encode(public.as_bytes()),
    )
}

/// A WireGuard peer of the edge, driven by hand.
pub struct FakeDevice {
    socket: UdpSocket,
    tunn: Tunn,
    edge: SocketAddr,
}

impl FakeDevice {
    /// Completes a handshake with the edge's endpoint at `edge` (public key
    /// `edge_public`, base64), from `bind`.
    pub fn connect(
        private: [u8; 32],
        edge_public: &str,
        edge: SocketAddr,
        bind: &str,
    ) -> FakeDevice {
        let key: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(edge_public)
            .expect("base64")
            .try_into()
            .expect("32 bytes");
        let secret = StaticSecret::from(private);
        let public = PublicKey::from(&secret);
        let tunn = Tunn::new(
            secret,
            PublicKey::from(key),
            None,
            None,
            IndexTable::from_os_rng(),
            Arc::new(RateLimiter::new(&public, 100)),
        );
        let socket = UdpSocket::bind(bind).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut d = FakeDevice { socket, tunn, edge };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no handshake with {edge}");
            let init = d
                .tunn
                .format_handshake_initiation(true)
                .expect("an initiation");
            d.send(WgKind::from(init));
            if let Some(WgKind::HandshakeResp(resp)) = d.recv_wg() {
                match d.tunn.handle_incoming_packet(WgKind::HandshakeResp(resp)) {
                    TunnResult::WriteToNetwork(p) => {
                        d.send(p);
                        return d;
                    }
                    TunnResult::Done => return d,
                    other => panic!("handshake: {other:?}"),
                }
            }
        }
    }

    fn send(&self, p: WgKind) {
        let p: Packet = p.into();
        let _ = self.socket.send_to(&p[..], self.edge);
    }

    fn recv_wg(&self) -> Option<WgKind> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.socket.recv_from(&mut buf).ok()?;
        Packet::from_bytes(BytesMut::from(&buf[..n]))
            .try_into_wg()
            .ok()
    }

    /// Sends one IP packet through the tunnel, as it is.
    pub fn send_ip(&mut self, ip: &[u8]) {
        if let Some(p) = self
            .tunn
            .handle_outgoing_packet(Packet::copy_from(ip), None)
        {
            self.send(p);
        }
    }

    /// The next IP packet the edge sent, within `timeout` (keepalives and
    /// handshakes are dealt with and skipped).
    pub fn recv_ip(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let Some(kind) = self.recv_wg() else { continue };
            match self.tunn.handle_incoming_packet(kind) {
                TunnResult::WriteToTunnel(p) if !p.is_empty() => {
                    let p = p.into_bytes();
                    return Some(p[..].to_vec());
                }
                TunnResult::WriteToNetwork(p) => self.send(p),
                _ => {}
            }
        }
        None
    }
}

/// A TCP SYN (or, with `rst`, a reset) from `src` to `dst`.
pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4, control: TcpControl) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1380),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    ip(
        *src.ip(),
        *dst.ip(),
        IpProtocol::Tcp,
        tcp.header_len(),
        |buf| {
            let mut packet = TcpPacket::new_unchecked(buf);
            tcp.emit(
                &mut packet,
                &IpAddress::Ipv4(*src.ip()),
                &IpAddress::Ipv4(*dst.ip()),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

/// An IPv4 packet from `src` to `dst` whose payload `fill` writes.
pub fn ip(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    };
    let mut bytes = vec![0u8; repr.buffer_len() + payload_len];
    let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
    repr.emit(&mut packet, &ChecksumCapabilities::default());
    fill(packet.payload_mut());
    bytes
}

/// Whether `packet` is a TCP reset.
pub fn is_rst(packet: &[u8]) -> bool {
    Ipv4Packet::new_checked(packet)
        .ok()
        .filter(|ip| ip.next_header() == IpProtocol::Tcp)
        .and_then(|ip| TcpPacket::new_checked(ip.payload()).ok().map(|t| t.rst()))
        .unwrap_or(false)
}
