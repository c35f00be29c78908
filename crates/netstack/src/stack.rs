//! [`Stack`]: the devices' TCP/IP stack and its flow tables.
//!
//! One smoltcp interface holds Warren's own address in the devices' range
//! and answers for every other address too (smoltcp's "any IP" mode, with a
//! default route through its own address), so a device's connection to
//! `192.168.1.10:3000` ends here. A TCP flow is not given a socket until
//! the caller has decided: the first SYN is held ([`Inbound::NewTcp`]),
//! then [`Stack::accept`] makes a socket for exactly that four-tuple and
//! lets the SYN in, or [`Stack::refuse`] lets it in with no socket, which
//! smoltcp answers with a reset. So a device learns nothing about a
//! destination it may not reach, and a flood of SYNs costs a held packet
//! each, bounded per device, never a socket.

use crate::packet::{ipv4_packet, parse, parse_echo, Echo, Parsed, Proto, Refusal};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, IpListenEndpoint, IpProtocol, UdpPacket, UdpRepr,
};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// A flow: the device's end and the destination it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// TCP or UDP.
    pub proto: Proto,
    /// The device's address and port.
    pub src: SocketAddrV4,
    /// The destination's.
    pub dst: SocketAddrV4,
}

/// The bounds every table keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// TCP flows with a socket, in all.
    pub flows: usize,
    /// TCP flows with a socket, per device address.
    pub flows_per_device: usize,
    /// Connections being set up, per device address: SYNs held for a
    /// decision plus accepted flows whose device has not completed the
    /// handshake. A SYN beyond it is dropped without a word (the device
    /// sends it again a second later), so a burst of connections is slowed,
    /// never reset, and a half-open flood holds at most this many.
    pub pending_per_device: usize,
    /// A flow whose device does not acknowledge what was sent (its SYN-ACK
    /// included) for this long is closed.
    pub unacknowledged_for: Duration,
    /// SYNs held for a decision, in all.
    pub pending: usize,
    /// How long a held SYN waits for a decision.
    pub pending_for: Duration,
    /// Each TCP socket's receive buffer (its window) and send buffer.
    pub tcp_buffer: usize,
    /// The interface's MTU (an IP packet's largest size).
    pub mtu: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            flows: 4096,
            flows_per_device: 256,
            pending_per_device: 64,
            unacknowledged_for: Duration::from_secs(15),
            pending: 4096,
            pending_for: Duration::from_secs(20),
            tcp_buffer: 128 * 1024,
            mtu: 1420,
        }
    }
}

/// What became of a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Taken by the stack (a flow's segment, or a stray it answers).
    Taken,
    /// The first SYN of a TCP flow: held until [`Stack::accept`] or
    /// [`Stack::refuse`].
    NewTcp(FlowKey),
    /// A datagram; `payload` is its range in the packet.
    Udp {
        /// The flow.
        key: FlowKey,
        /// Offset and length of the payload in the packet given.
        payload: (usize, usize),
    },
    /// An ICMP echo request from a device: the caller answers it with
    /// [`crate::echo_reply`] or not.
    Echo(Echo),
    /// Not taken, and why.
    Dropped(Refusal),
}

/// A TCP flow's state, as the carrier of its bytes needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpStatus {
    /// Bytes the socket can take now.
    pub send_room: usize,
    /// Bytes waiting to be read.
    pub readable: usize,
    /// The device sent FIN and every byte before it was read.
    pub device_done: bool,
    /// The connection is over (closed, reset or timed out).
    pub closed: bool,
    /// The three-way handshake completed.
    pub established: bool,
}

/// What the stack dropped, by reason, and what it carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Malformed or not IPv4.
    pub malformed: u64,
    /// Fragments.
    pub fragments: u64,
    /// Neither TCP nor UDP nor an echo request.
    pub protocol: u64,
    /// From outside the devices' range.
    pub spoofed: u64,
    /// To a non-unicast address.
    pub destination: u64,
    /// A table was full.
    pub full: u64,
    /// Larger than the MTU.
    pub oversized: u64,
    /// Held SYNs that waited too long.
    pub pending_expired: u64,
}

struct Pending {
    syn: Vec<u8>,
    since: Instant,
}

#[derive(Default, Clone, Copy)]
struct PerDevice {
    flows: usize,
    pending: usize,
}

/// The devices' stack.
pub struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    queue: Queue,
    epoch: Instant,
    own: Ipv4Addr,
    network: (u32, u32),
    limits: Limits,
    flows: HashMap<FlowKey, SocketHandle>,
    pending: HashMap<FlowKey, Pending>,
    per_device: HashMap<Ipv4Addr, PerDevice>,
    counters: Counters,
}

impl Stack {
    /// A stack whose own address is `own` in the devices' network
    /// `own/prefix`.
    pub fn new(own: Ipv4Addr, prefix: u8, limits: Limits, now: Instant) -> Stack {
        let mut queue = Queue {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu: limits.mtu,
        };
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut queue,
            smoltcp::time::Instant::from_micros(0),
        );
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(own), prefix));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(own);
        iface.set_any_ip(true);
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            queue,
            epoch: now,
            own,
            network: (u32::from(own) & mask, mask),
            limits,
            flows: HashMap::new(),
            pending: HashMap::new(),
            per_device: HashMap::new(),
            counters: Counters::default(),
        }
    }

    /// Warren's own address.
    pub fn own_address(&self) -> Ipv4Addr {
        self.own
    }

    /// What was dropped so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// TCP flows with a socket now.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// SYNs held for a decision now.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The open TCP flows.
    pub fn flows(&self) -> impl Iterator<Item = &FlowKey> {
        self.flows.keys()
    }

    fn is_device(&self, a: Ipv4Addr) -> bool {
        let bits = u32::from(a);
        let (net, mask) = self.network;
        bits & mask == net && a != self.own && bits != net && bits != net | !mask
    }

    /// Takes one packet a device sent. A segment of a flow waits for the
    /// next [`Stack::poll`].
    pub fn receive(&mut self, packet: &[u8], now: Instant) -> Inbound {
        if packet.len() > self.limits.mtu {
            return self.drop(Refusal::Oversized);
        }
        let parsed: Parsed = match parse(packet) {
            Ok(p) => p,
            Err(Refusal::Protocol) => {
                return match parse_echo(packet) {
                    Some(echo) if self.is_device(echo.src) => Inbound::Echo(echo),
                    Some(_) => self.drop(Refusal::Spoofed),
                    None => self.drop(Refusal::Protocol),
                }
            }
            Err(r) => return self.drop(r),
        };
        if !self.is_device(*parsed.src.ip()) {
            return self.drop(Refusal::Spoofed);
        }
        let key = FlowKey {
            proto: parsed.proto,
            src: parsed.src,
            dst: parsed.dst,
        };
        match parsed.proto {
            Proto::Udp => Inbound::Udp {
                key,
                payload: parsed.payload,
            },
            Proto::Tcp if self.flows.contains_key(&key) || !parsed.syn => {
                // Taken in at the next `poll`, once per batch of packets.
                self.queue.rx.push_back(packet.to_vec());
                Inbound::Taken
            }
            Proto::Tcp => {
                if let Some(p) = self.pending.get_mut(&key) {
                    // A retransmitted SYN: keep the newest.
                    p.syn = packet.to_vec();
                    return Inbound::Taken;
                }
                let half_open = self.half_open(*key.src.ip());
                let device = self.per_device.entry(*key.src.ip()).or_default();
                if device.pending + half_open >= self.limits.pending_per_device
                    || self.pending.len() >= self.limits.pending
                {
                    return self.drop(Refusal::Full);
                }
                device.pending += 1;
                self.pending.insert(
                    key,
                    Pending {
                        syn: packet.to_vec(),
                        since: now,
                    },
                );
                Inbound::NewTcp(key)
            }
        }
    }

    /// Accepted flows of the device at `addr` still in their handshake.
    fn half_open(&self, addr: Ipv4Addr) -> usize {
        self.flows
            .iter()
            .filter(|(k, h)| {
                *k.src.ip() == addr
                    && matches!(
                        self.sockets.get::<tcp::Socket>(**h).state(),
                        tcp::State::Listen | tcp::State::SynReceived
                    )
            })
            .count()
    }

    fn drop(&mut self, why: Refusal) -> Inbound {
        let c = &mut self.counters;
        match why {
            Refusal::Malformed => c.malformed += 1,
            Refusal::Fragment => c.fragments += 1,
            Refusal::Protocol => c.protocol += 1,
            Refusal::Spoofed => c.spoofed += 1,
            Refusal::Destination => c.destination += 1,
            Refusal::Full => c.full += 1,
            Refusal::Oversized => c.oversized += 1,
        }
        Inbound::Dropped(why)
    }

    fn take_pending(&mut self, key: &FlowKey) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        if let Some(d) = self.per_device.get_mut(key.src.ip()) {
            d.pending = d.pending.saturating_sub(1);
        }
        Some(p)
    }

    /// Lets a held SYN in with a socket for its four-tuple: the device's
    /// connection completes. `Err` when the flow tables are full (the SYN
    /// is then answered with a reset) or nothing was held (it expired).
    pub fn accept(&mut self, key: FlowKey, now: Instant) -> Result<(), Refusal> {
        let Some(pending) = self.take_pending(&key) else {
            return Err(Refusal::Full);
        };
        let device = self.per_device.entry(*key.src.ip()).or_default();
        if device.flows >= self.limits.flows_per_device || self.flows.len() >= self.limits.flows {
            self.counters.full += 1;
            self.queue.rx.push_back(pending.syn);
            self.poll(now);
            return Err(Refusal::Full);
        }
        device.flows += 1;
        let buffer = self.limits.tcp_buffer;
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        );
        socket.set_nagle_enabled(false);
        socket.set_timeout(Some(smoltcp::time::Duration::from_micros(
            u64::try_from(self.limits.unacknowledged_for.as_micros()).unwrap_or(u64::MAX),
        )));
        socket.set_ack_delay(None);
        let listen = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(*key.dst.ip())),
            port: key.dst.port(),
        };
        if socket.listen(listen).is_err() {
            return Err(Refusal::Destination);
        }
        let handle = self.sockets.add(socket);
        self.flows.insert(key, handle);
        self.queue.rx.push_back(pending.syn);
        self.poll(now);
        Ok(())
    }

    /// Lets a held SYN in with no socket: the device gets a reset.
    pub fn refuse(&mut self, key: FlowKey, now: Instant) {
        if let Some(p) = self.take_pending(&key) {
            self.queue.rx.push_back(p.syn);
            self.poll(now);
        }
    }

    /// Runs the stack: segments in, segments out, timers. Held SYNs past
    /// their time are dropped.
    pub fn poll(&mut self, now: Instant) {
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.queue, &mut self.sockets);
        let limit = self.limits.pending_for;
        let expired: Vec<FlowKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) > limit)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.take_pending(&key);
            self.counters.pending_expired += 1;
        }
    }

    /// How long until [`Stack::poll`] has timer work, if it has any.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        let t = self.smol_now(now);
        self.iface
            .poll_delay(t, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    fn smol_now(&self, now: Instant) -> smoltcp::time::Instant {
        let micros = now.saturating_duration_since(self.epoch).as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// The next packet for the devices, if any.
    pub fn transmit(&mut self) -> Option<Vec<u8>> {
        self.queue.tx.pop_front()
    }

    fn socket(&mut self, key: &FlowKey) -> Option<&mut tcp::Socket<'static>> {
        let handle = *self.flows.get(key)?;
        Some(self.sockets.get_mut::<tcp::Socket>(handle))
    }

    /// A TCP flow's state; `None` once it is gone.
    pub fn tcp_status(&mut self, key: &FlowKey) -> Option<TcpStatus> {
        let s = self.socket(key)?;
        let state = s.state();
        Some(TcpStatus {
            send_room: if s.may_send() {
                s.send_capacity() - s.send_queue()
            } else {
                0
            },
            readable: s.recv_queue(),
            device_done: !s.may_recv()
                && s.recv_queue() == 0
                && state != tcp::State::Listen
                && state != tcp::State::SynReceived,
            closed: matches!(state, tcp::State::Closed | tcp::State::TimeWait),
            established: !matches!(
                state,
                tcp::State::Listen | tcp::State::SynReceived | tcp::State::Closed
            ),
        })
    }

    /// Queues bytes for the device; returns how many were taken.
    pub fn tcp_send(&mut self, key: &FlowKey, data: &[u8]) -> usize {
        match self.socket(key) {
            Some(s) if s.may_send() => s.send_slice(data).unwrap_or(0),
            _ => 0,
        }
    }

    /// Reads what the device sent, up to `buf.len()` bytes.
    pub fn tcp_recv(&mut self, key: &FlowKey, buf: &mut [u8]) -> usize {
        match self.socket(key) {
            Some(s) if s.can_recv() => s.recv_slice(buf).unwrap_or(0),
            _ => 0,
        }
    }

    /// Sends FIN once what is queued is sent (the site's side ended).
    pub fn tcp_close(&mut self, key: &FlowKey) {
        if let Some(s) = self.socket(key) {
            s.close();
        }
    }

    /// Resets the flow (the site's side failed, or access was withdrawn).
    pub fn tcp_abort(&mut self, key: &FlowKey) {
        if let Some(s) = self.socket(key) {
            s.abort();
        }
    }

    /// Resets every flow of the device at `addr` and forgets its held
    /// SYNs; returns the flows that were open.
    pub fn cut_device(&mut self, addr: Ipv4Addr, now: Instant) -> Vec<FlowKey> {
        let cut: Vec<FlowKey> = self
            .flows
            .keys()
            .filter(|k| *k.src.ip() == addr)
            .copied()
            .collect();
        for key in &cut {
            self.tcp_abort(key);
        }
        let held: Vec<FlowKey> = self
            .pending
            .keys()
            .filter(|k| *k.src.ip() == addr)
            .copied()
            .collect();
        for key in held {
            self.take_pending(&key);
        }
        self.poll(now);
        cut
    }

    /// Removes the sockets of flows that are over and returns their keys.
    pub fn reap(&mut self) -> Vec<FlowKey> {
        let mut done = Vec::new();
        for (key, handle) in &self.flows {
            let s = self.sockets.get::<tcp::Socket>(*handle);
            if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
                done.push(*key);
            }
        }
        for key in &done {
            if let Some(handle) = self.flows.remove(key) {
                self.sockets.remove(handle);
            }
            if let Some(d) = self.per_device.get_mut(key.src.ip()) {
                d.flows = d.flows.saturating_sub(1);
                if d.flows == 0 && d.pending == 0 {
                    self.per_device.remove(key.src.ip());
                }
            }
        }
        done
    }

    /// An IPv4 UDP packet from `from` to the device at `to`.
    pub fn udp_packet(&self, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: from.port(),
            dst_port: to.port(),
        };
        let len = udp.header_len() + payload.len();
        ipv4_packet(*from.ip(), *to.ip(), IpProtocol::Udp, len, |bytes| {
            udp.emit(
                &mut UdpPacket::new_unchecked(bytes),
                &IpAddress::Ipv4(*from.ip()),
                &IpAddress::Ipv4(*to.ip()),
                payload.len(),
                |buf| buf.copy_from_slice(payload),
                &smoltcp::phy::ChecksumCapabilities::default(),
            );
        })
    }
}

/// The stack's "network card": packets pushed in by [`Stack::receive`],
/// packets for the devices taken by [`Stack::transmit`].
struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
}

impl phy::Device for Queue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(
        &mut self,
        _timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}
