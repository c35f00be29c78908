//! The driver: one task that owns the devices' stack ([`Stack`]) and moves
//! packets and bytes between gotatun, the stack and the flows.
//!
//! ```text
//! loop:
//!   packets from devices  → stack.receive → a held SYN: decide (policy) →
//!                           open the stream in a task → accept / refuse
//!   flow channels         ↔ the flows' sockets (as much as each side takes)
//!   stack.poll            → packets for devices → gotatun
//! ```
//!
//! Nothing here waits on a flow: every channel is used with `try_`
//! operations, and a flow that cannot take more simply keeps its bytes in
//! its socket, whose window then closes.

use super::dns::{self, Resolution};
use super::flow::{self, Carrier, Down};
use super::{udp, DeviceInfo, Endpoint};
use crate::access::{check_device, Access, DeviceWho};
use crate::config::Resource;
use crate::EdgeShared;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use warren_netstack::{Echo, FlowKey, Inbound, Proto, Stack};

/// What the driver is told besides packets.
pub(super) enum Ctl {
    /// A flow's stream opened (or not).
    Opened {
        key: FlowKey,
        carrier: Option<Carrier>,
    },
    /// Reset every flow of this device (revoked, or its user disabled).
    Cut(Ipv4Addr),
    /// Ask the policy again about every open flow (it changed).
    Recheck,
}

/// The largest read from a socket at once.
const READ: usize = 32 * 1024;
/// Packets taken from gotatun per turn before the stack runs.
const BATCH: usize = 256;
/// UDP flows per device, and in all.
const UDP_FLOWS_PER_DEVICE: usize = 256;
const UDP_FLOWS: usize = 4096;
/// DNS queries being forwarded upstream at once (more are dropped; the
/// device asks again).
pub(super) const DNS_IN_FLIGHT: usize = 64;

pub(super) struct Driver {
    pub(super) shared: Arc<EdgeShared>,
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) stack: Stack,
    pub(super) packets: mpsc::Receiver<BytesMut>,
    pub(super) out: mpsc::Sender<Vec<u8>>,
    pub(super) ctl_tx: mpsc::Sender<Ctl>,
    pub(super) ctl: mpsc::Receiver<Ctl>,
    pub(super) wake: Arc<Notify>,
    pub(super) carriers: HashMap<FlowKey, Carrier>,
    /// The resource each open flow was allowed to (for rechecks).
    pub(super) allowed: HashMap<FlowKey, String>,
    /// UDP flows: where their datagrams go.
    pub(super) udp: HashMap<FlowKey, mpsc::Sender<Bytes>>,
    /// Datagrams for devices (UDP replies, DNS answers from upstream).
    pub(super) replies_tx: mpsc::Sender<(FlowKey, Bytes)>,
    pub(super) replies: mpsc::Receiver<(FlowKey, Bytes)>,
    /// Packets made outside the stack, sent at the end of the turn.
    pub(super) made: Vec<Vec<u8>>,
    pub(super) dns_slots: Arc<Semaphore>,
    pub(super) upstreams: Arc<Vec<SocketAddr>>,
    /// When an escalated grant that allowed a flow ends: ask again then.
    pub(super) recheck_at: Option<Instant>,
}

impl Driver {
    pub(super) async fn run(mut self, stop: CancellationToken) {
        let mut changes = self.shared.config_changed.subscribe();
        loop {
            let now = Instant::now();
            let delay = self
                .stack
                .poll_delay(now)
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1))
                .min(
                    self.recheck_at
                        .map_or(Duration::MAX, |t| t.saturating_duration_since(now)),
                );
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                Some(ctl) = self.ctl.recv() => self.control(ctl),
                Some(first) = self.packets.recv() => {
                    self.inbound(&first);
                    for _ in 1..BATCH {
                        match self.packets.try_recv() {
                            Ok(p) => self.inbound(&p),
                            Err(_) => break,
                        }
                    }
                }
                Some((key, payload)) = self.replies.recv() => {
                    self.made.push(self.stack.udp_packet(key.dst, key.src, &payload));
                    while let Ok((key, payload)) = self.replies.try_recv() {
                        self.made.push(self.stack.udp_packet(key.dst, key.src, &payload));
                        if self.made.len() >= BATCH {
                            break;
                        }
                    }
                }
                _ = self.wake.notified() => {}
                Ok(()) = changes.changed() => {
                    let shared = self.shared.clone();
                    tokio::spawn(async move { super::refresh(&shared).await });
                    self.recheck();
                }
                _ = tokio::time::sleep(delay) => {}
            }
            if self.recheck_at.is_some_and(|t| Instant::now() >= t) {
                self.recheck_at = None;
                self.recheck();
            }
            self.turn().await;
        }
    }

    /// Moves bytes between the flows and their sockets, runs the stack,
    /// sends what it made.
    async fn turn(&mut self) {
        let now = Instant::now();
        self.service();
        self.stack.poll(now);
        self.service();
        for key in self.stack.reap() {
            self.carriers.remove(&key);
            self.allowed.remove(&key);
            self.endpoint.flow_closed(*key.src.ip());
        }
        let made = std::mem::take(&mut self.made);
        for p in made
            .into_iter()
            .chain(std::iter::from_fn(|| self.stack.transmit()))
        {
            if self.out.send(p).await.is_err() {
                return;
            }
        }
    }

    fn control(&mut self, ctl: Ctl) {
        let now = Instant::now();
        match ctl {
            Ctl::Opened { key, carrier } => match carrier {
                Some(c) if self.stack.accept(key, now).is_ok() => {
                    self.carriers.insert(key, c);
                    self.endpoint.flow_opened(*key.src.ip());
                }
                Some(_) => {
                    self.allowed.remove(&key);
                }
                None => {
                    self.allowed.remove(&key);
                    self.stack.refuse(key, now);
                }
            },
            Ctl::Cut(addr) => {
                for key in self.stack.cut_device(addr, now) {
                    self.carriers.remove(&key);
                    self.allowed.remove(&key);
                }
                self.udp.retain(|k, _| *k.src.ip() != addr);
            }
            Ctl::Recheck => self.recheck(),
        }
    }

    /// A packet a device sent.
    fn inbound(&mut self, packet: &[u8]) {
        let now = Instant::now();
        match self.stack.receive(packet, now) {
            Inbound::Taken => {}
            Inbound::Dropped(why) => {
                tracing::trace!(reason = %why, "device packet dropped");
            }
            Inbound::NewTcp(key) => self.new_tcp(key, now),
            Inbound::Echo(echo) => {
                if self.answers_ping(echo) {
                    self.made.extend(warren_netstack::echo_reply(packet));
                }
            }
            Inbound::Udp {
                key,
                payload: (at, len),
            } => {
                let payload = &packet[at..at + len];
                if key.dst == SocketAddrV4::new(self.stack.own_address(), 53) {
                    self.dns(key, payload);
                } else {
                    self.datagram(key, payload);
                }
            }
        }
    }

    /// Is a ping answered? For Warren's own address always (the tunnel is
    /// up); for an address of a private resource when the device may reach
    /// some port of it (as its name is shown by DNS) and an agent of its
    /// site is connected. The edge answers: the host itself is not pinged.
    fn answers_ping(&self, echo: Echo) -> bool {
        if echo.dst == self.stack.own_address() {
            return true;
        }
        let Some(device) = self.endpoint.device_at(echo.src) else {
            return false;
        };
        let Some(resource) = super::private_resource_at(&self.shared, echo.dst) else {
            return false;
        };
        let Some(private) = resource.private.as_ref() else {
            return false;
        };
        dns::visible(&self.shared, &device, &resource)
            && self.shared.registry.agent_count(&private.site) > 0
    }

    /// A query to Warren's resolver.
    fn dns(&mut self, key: FlowKey, query: &[u8]) {
        let Some(device) = self.endpoint.device_at(*key.src.ip()) else {
            return;
        };
        match dns::resolve(&self.shared, &device, query) {
            Resolution::Answer(a) => self.made.push(self.stack.udp_packet(key.dst, key.src, &a)),
            Resolution::Drop => {}
            Resolution::Forward => {
                let Ok(slot) = self.dns_slots.clone().try_acquire_owned() else {
                    return;
                };
                let (upstreams, replies) = (self.upstreams.clone(), self.replies_tx.clone());
                let query = query.to_vec();
                tokio::spawn(async move {
                    let answer = match dns::forward(&upstreams, &query).await {
                        Some(a) => Some(a),
                        None => dns::servfail(&query),
                    };
                    if let Some(a) = answer {
                        let _ = replies.send((key, Bytes::from(a))).await;
                    }
                    drop(slot);
                });
            }
        }
    }

    /// A datagram to a private resource: into its flow, or a new flow if
    /// the policy allows one.
    fn datagram(&mut self, key: FlowKey, payload: &[u8]) {
        let data = Bytes::copy_from_slice(payload);
        let data = match self.udp.get(&key).map(|tx| tx.try_send(data)) {
            None => Bytes::copy_from_slice(payload),
            Some(Ok(())) | Some(Err(mpsc::error::TrySendError::Full(_))) => return,
            Some(Err(mpsc::error::TrySendError::Closed(d))) => {
                self.udp.remove(&key);
                d
            }
        };
        if self.udp.len() >= UDP_FLOWS {
            self.udp.retain(|_, tx| !tx.is_closed());
        }
        let mine = self
            .udp
            .keys()
            .filter(|k| k.src.ip() == key.src.ip())
            .count();
        if mine >= UDP_FLOWS_PER_DEVICE || self.udp.len() >= UDP_FLOWS {
            self.udp.retain(|_, tx| !tx.is_closed());
            return;
        }
        let Some((resource, _)) = self.lookup(&key) else {
            return;
        };
        let site = resource
            .private
            .as_ref()
            .expect("a private resource")
            .site
            .clone();
        let (tx, rx) = mpsc::channel(udp::QUEUE);
        let _ = tx.try_send(data);
        self.udp.insert(key, tx);
        self.allowed.insert(key, resource.name.clone());
        let (shared, replies) = (self.shared.clone(), self.replies_tx.clone());
        tokio::spawn(udp::run(
            shared,
            resource.name.clone(),
            site,
            key,
            rx,
            replies,
        ));
    }

    /// A device's first SYN: which resource, may it, then the stream.
    fn new_tcp(&mut self, key: FlowKey, now: Instant) {
        let Some((resource, device)) = self.lookup(&key) else {
            self.stack.refuse(key, now);
            return;
        };
        let private = resource.private.as_ref().expect("a private resource");
        let site = private.site.clone();
        self.allowed.insert(key, resource.name.clone());
        let (shared, ctl, wake) = (self.shared.clone(), self.ctl_tx.clone(), self.wake.clone());
        let name = resource.name.clone();
        tokio::spawn(async move {
            let carrier = match flow::open(shared, name.clone(), site, key, wake).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::info!(
                        event = "device_flow_failed", resource = %name, device = %device.name,
                        destination = %key.dst, error = %e, "a device's flow could not reach its site"
                    );
                    None
                }
            };
            let _ = ctl.send(Ctl::Opened { key, carrier }).await;
        });
    }

    /// The private resource a flow is for and the device, if the policy
    /// lets the device reach it.
    fn lookup(&mut self, key: &FlowKey) -> Option<(Arc<Resource>, Arc<DeviceInfo>)> {
        let device = self.endpoint.device_at(*key.src.ip())?;
        let proto = match key.proto {
            Proto::Tcp => warren_policy::Proto::Tcp,
            Proto::Udp => warren_policy::Proto::Udp,
        };
        let resource = super::private_resource(&self.shared, key.dst, proto)?;
        let who = DeviceWho {
            device: Some(&device.name),
            email: &device.email,
            groups: &device.groups,
            tags: &device.tags,
        };
        match check_device(&self.shared, &resource, &who, key.src, key.dst, proto) {
            (Access::Granted { .. }, escalated) => {
                if let Some(left) = escalated {
                    // Ask again when the escalation ends.
                    let at = Instant::now() + left + Duration::from_millis(50);
                    self.recheck_at = Some(self.recheck_at.map_or(at, |t| t.min(at)));
                }
                Some((resource, device))
            }
            _ => None,
        }
    }

    /// Asks the policy again about every open flow; resets those it no
    /// longer allows.
    fn recheck(&mut self) {
        let now = Instant::now();
        let keys: Vec<FlowKey> = self.carriers.keys().copied().collect();
        for key in keys {
            let still = self
                .lookup(&key)
                .is_some_and(|(r, _)| self.allowed.get(&key) == Some(&r.name));
            if !still {
                tracing::info!(event = "device_flow_cut", device = %key.src, destination = %key.dst, "the policy no longer allows this flow; reset");
                self.stack.tcp_abort(&key);
                self.carriers.remove(&key);
                self.allowed.remove(&key);
            }
        }
        let keys: Vec<FlowKey> = self.udp.keys().copied().collect();
        for key in keys {
            let still = self
                .lookup(&key)
                .is_some_and(|(r, _)| self.allowed.get(&key) == Some(&r.name));
            if !still {
                self.udp.remove(&key);
                self.allowed.remove(&key);
            }
        }
        self.stack.poll(now);
    }

    /// Moves what each side can take.
    fn service(&mut self) {
        let mut buf = [0u8; READ];
        let mut gone = Vec::new();
        for (key, c) in self.carriers.iter_mut() {
            let Some(status) = self.stack.tcp_status(key) else {
                gone.push(*key);
                continue;
            };
            // Device → site.
            if let Some(up) = &c.up {
                let mut readable = status.readable;
                while readable > 0 && up.capacity() > 0 {
                    let n = self.stack.tcp_recv(key, &mut buf);
                    if n == 0 {
                        break;
                    }
                    readable = readable.saturating_sub(n);
                    if up.try_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        break;
                    }
                }
                if status.device_done && readable == 0 {
                    c.up = None;
                }
            }
            // Site → device.
            loop {
                if let Some(p) = c.pending.take() {
                    let n = self.stack.tcp_send(key, &p);
                    if n < p.len() {
                        c.pending = Some(p.slice(n..));
                        break;
                    }
                }
                match c.down.try_recv() {
                    Ok(Down::Data(b)) => c.pending = Some(b),
                    Ok(Down::End) => c.site_ended = true,
                    Ok(Down::Reset) | Err(mpsc::error::TryRecvError::Disconnected) => {
                        if !c.site_ended {
                            self.stack.tcp_abort(key);
                        }
                        c.site_ended = true;
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            if c.site_ended && c.pending.is_none() && !c.fin_sent {
                self.stack.tcp_close(key);
                c.fin_sent = true;
            }
        }
        for key in gone {
            self.carriers.remove(&key);
        }
    }
}
