//! The WireGuard side: gotatun's device, in user space, with its "TUN" being
//! two channels to the driver (`driver.rs`) instead of a kernel interface,
//! and its UDP socket bound where `[devices] listen` says.
//!
//! gotatun does the protocol: handshakes (with cookies under load), keys,
//! timers, and the check that a packet's source is the address its peer was
//! given (`AllowedIPs` of one /32 per device), so a device cannot speak for
//! another. Peers are the store's devices ([`Wg::set_peers`]).

use bytes::BytesMut;
use gotatun::device::{Device, DeviceBuilder, Peer};
use gotatun::packet::{Ip, Packet, PacketBufPool};
use gotatun::tun::{IpRecv, IpSend, MtuWatcher};
use gotatun::udp::socket::{SockOpt, UdpSocket};
use gotatun::udp::{UdpTransportFactory, UdpTransportFactoryParams};
use gotatun::x25519::{PublicKey, StaticSecret};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::sync::mpsc;

/// The devices' MTU (wg-quick's default).
pub(super) const MTU: u16 = 1420;
/// Packets in flight between gotatun and the driver, each way.
const CHANNEL: usize = 1024;

type Transports = (BoundUdp, ToStack, FromStack);

/// The running WireGuard endpoint.
pub(super) struct Wg {
    device: Device<Transports>,
    /// The UDP address bound.
    pub(super) local_addr: SocketAddr,
}

/// What one peer has done, as gotatun counts it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PeerTraffic {
    pub(super) last_handshake: Option<std::time::Duration>,
    pub(super) rx_bytes: u64,
    pub(super) tx_bytes: u64,
}

impl Wg {
    /// Binds `listen` and starts gotatun. Returns the endpoint, the packets
    /// devices sent (decrypted, their sources checked), and where to put
    /// packets for the devices.
    pub(super) async fn start(
        listen: SocketAddr,
        key: StaticSecret,
    ) -> io::Result<(Wg, mpsc::Receiver<BytesMut>, mpsc::Sender<Vec<u8>>)> {
        let (in_tx, in_rx) = mpsc::channel(CHANNEL);
        let (out_tx, out_rx) = mpsc::channel(CHANNEL);
        let device = DeviceBuilder::new()
            .with_udp(BoundUdp { addr: listen })
            .with_ip_pair(ToStack { tx: in_tx }, FromStack { rx: out_rx })
            .build()
            .await
            .map_err(io::Error::other)?;
        device
            .write(async |d| d.set_private_key(key).await)
            .await
            .map_err(io::Error::other)?;
        let port = device.read(async |d| d.listen_port()).await;
        let local_addr = SocketAddr::new(listen.ip(), port);
        Ok((Wg { device, local_addr }, in_rx, out_tx))
    }

    /// Makes the peers exactly `peers` (public key → the device's address).
    /// A device whose key or address changed is removed and added again.
    pub(super) async fn set_peers(&self, peers: &HashMap<[u8; 32], Ipv4Addr>) {
        let now: HashMap<[u8; 32], Vec<String>> = self
            .device
            .read(async |d| {
                d.peers()
                    .await
                    .into_iter()
                    .map(|p| {
                        let ips = p.peer.allowed_ips.iter().map(|n| n.to_string()).collect();
                        (p.peer.public_key.to_bytes(), ips)
                    })
                    .collect()
            })
            .await;
        let result = self
            .device
            .write(async |d| {
                for (key, ips) in &now {
                    let want = peers.get(key).map(|a| vec![format!("{a}/32")]);
                    if want.as_ref() != Some(ips) {
                        d.remove_peer(&PublicKey::from(*key)).await;
                    }
                }
                for (key, addr) in peers {
                    let want = vec![format!("{addr}/32")];
                    if now.get(key) != Some(&want) {
                        let peer = Peer::new(PublicKey::from(*key))
                            .with_allowed_ip(std::net::IpAddr::V4(*addr).into());
                        d.add_peer(peer);
                    }
                }
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the WireGuard endpoint refused its peers");
        }
    }

    /// What each peer (by public key) has done.
    pub(super) async fn traffic(&self) -> HashMap<[u8; 32], PeerTraffic> {
        self.device
            .read(async |d| {
                d.peers()
                    .await
                    .into_iter()
                    .map(|p| {
                        (
                            p.peer.public_key.to_bytes(),
                            PeerTraffic {
                                last_handshake: p.stats.last_handshake,
                                rx_bytes: p.stats.rx_bytes as u64,
                                tx_bytes: p.stats.tx_bytes as u64,
                            },
                        )
                    })
                    .collect()
            })
            .await
    }
}

/// gotatun's UDP, bound to the configured address (its own factory binds
/// every address).
pub(super) struct BoundUdp {
    addr: SocketAddr,
}

impl UdpTransportFactory for BoundUdp {
    type Send = UdpSocket;
    type Recv = UdpSocket;

    async fn bind(
        &mut self,
        params: &UdpTransportFactoryParams,
    ) -> io::Result<(UdpSocket, UdpSocket)> {
        // gotatun remembers the port bound first and asks for it again
        // when it rebinds (a key change).
        let port = if params.port != 0 {
            params.port
        } else {
            self.addr.port()
        };
        let opts = SockOpt {
            recv_buffer_size: Some(4 << 20),
            send_buffer_size: Some(4 << 20),
            ..SockOpt::default()
        };
        let socket = UdpSocket::bind(SocketAddr::new(self.addr.ip(), port), opts)?;
        Ok((socket.clone(), socket))
    }
}

/// gotatun's "TUN" writes: packets from devices, to the driver.
pub(super) struct ToStack {
    tx: mpsc::Sender<BytesMut>,
}

impl IpSend for ToStack {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        let mut packet = packet.into_bytes();
        let bytes = std::mem::take(packet.buf_mut());
        self.tx
            .send(bytes)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the driver stopped"))
    }
}

/// gotatun's "TUN" reads: packets for devices, from the driver.
pub(super) struct FromStack {
    rx: mpsc::Receiver<Vec<u8>>,
}

impl IpRecv for FromStack {
    async fn recv<'a>(
        &'a mut self,
        _pool: &mut PacketBufPool,
    ) -> io::Result<impl Iterator<Item = Packet<Ip>> + Send + 'a> {
        let Some(first) = self.rx.recv().await else {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the driver stopped",
            ));
        };
        let mut batch = vec![first];
        while batch.len() < 64 {
            match self.rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        Ok(batch.into_iter().filter_map(|p| {
            Packet::from_bytes(BytesMut::from(&p[..]))
                .try_into_ip()
                .ok()
        }))
    }

    fn mtu(&self) -> MtuWatcher {
        MtuWatcher::new(MTU)
    }
}
