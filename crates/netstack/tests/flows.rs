//! The stack against a device that is itself a TCP/IP stack (a second
//! smoltcp interface, as a phone's kernel would be): packets are shuttled
//! between the two by hand, so every step is seen.

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};
use warren_netstack::{FlowKey, Inbound, Limits, Proto, Refusal, Stack};

const OWN: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 1);
const PHONE: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 2);
const GRAFANA: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 3000);

struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);
impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}
impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push_back(b);
        r
    }
}
impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1420;
        c
    }
}

/// A phone: its own stack, one socket per connection it makes.
struct Phone {
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
    t: i64,
}

impl Phone {
    fn new(addr: Ipv4Addr) -> Phone {
        let mut wire = Wire {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
        };
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut wire,
            smoltcp::time::Instant::from_millis(0),
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(addr), 16)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(OWN).unwrap();
        Phone {
            iface,
            wire,
            sockets: SocketSet::new(Vec::new()),
            t: 0,
        }
    }

    fn connect(&mut self, to: SocketAddrV4, local_port: u16) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        s.connect(
            self.iface.context(),
            (IpAddress::Ipv4(*to.ip()), to.port()),
            local_port,
        )
        .unwrap();
        self.sockets.add(s)
    }

    fn poll(&mut self) {
        self.t += 10;
        self.iface.poll(
            smoltcp::time::Instant::from_millis(self.t),
            &mut self.wire,
            &mut self.sockets,
        );
    }

    fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }
}

/// Moves packets both ways until neither side has any; returns what the
/// stack said of each packet the phone sent.
fn shuttle(phone: &mut Phone, stack: &mut Stack, now: Instant) -> Vec<Inbound> {
    let mut said = Vec::new();
    for _ in 0..50 {
        phone.poll();
        let mut moved = false;
        while let Some(p) = phone.wire.tx.pop_front() {
            said.push(stack.receive(&p, now));
            moved = true;
        }
        stack.poll(now);
        while let Some(p) = stack.transmit() {
            phone.wire.rx.push_back(p);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    said
}

fn key(port: u16) -> FlowKey {
    FlowKey {
        proto: Proto::Tcp,
        src: SocketAddrV4::new(PHONE, port),
        dst: GRAFANA,
    }
}

#[test]
fn an_accepted_flow_carries_bytes_both_ways_and_ends_with_fin() {
    let now = Instant::now();
    let mut stack = Stack::new(OWN, 16, Limits::default(), now);
    let mut phone = Phone::new(PHONE);
    let h = phone.connect(GRAFANA, 40000);
    let said = shuttle(&mut phone, &mut stack, now);
    assert_eq!(said, vec![Inbound::NewTcp(key(40000))], "the SYN is held");
    assert!(!phone.socket(h).is_active() || phone.socket(h).state() == tcp::State::SynSent);
    stack.accept(key(40000), now).unwrap();
    while let Some(p) = stack.transmit() {
        phone.wire.rx.push_back(p);
    }
    shuttle(&mut phone, &mut stack, now);
    assert_eq!(phone.socket(h).state(), tcp::State::Established);

    phone
        .socket(h)
        .send_slice(b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    shuttle(&mut phone, &mut stack, now);
    let mut buf = [0u8; 64];
    let n = stack.tcp_recv(&key(40000), &mut buf);
    assert_eq!(&buf[..n], b"GET / HTTP/1.0\r\n\r\n");

    assert_eq!(
        stack.tcp_send(&key(40000), b"HTTP/1.0 200 OK\r\n\r\nhi"),
        21
    );
    stack.tcp_close(&key(40000));
    stack.poll(now);
    shuttle(&mut phone, &mut stack, now);
    let mut got = [0u8; 64];
    let n = phone.socket(h).recv_slice(&mut got).unwrap();
    assert_eq!(&got[..n], b"HTTP/1.0 200 OK\r\n\r\nhi");
    assert!(!phone.socket(h).may_recv(), "the site's end became a FIN");
    phone.socket(h).close();
    shuttle(&mut phone, &mut stack, now);
    let status = stack.tcp_status(&key(40000));
    assert!(status.is_none_or(|s| s.closed), "{status:?}");
    stack.reap();
    assert_eq!(stack.flow_count(), 0);
}

#[test]
fn a_refused_flow_is_reset_and_leaves_nothing() {
    let now = Instant::now();
    let mut stack = Stack::new(OWN, 16, Limits::default(), now);
    let mut phone = Phone::new(PHONE);
    let h = phone.connect(GRAFANA, 40001);
    shuttle(&mut phone, &mut stack, now);
    stack.refuse(key(40001), now);
    while let Some(p) = stack.transmit() {
        phone.wire.rx.push_back(p);
    }
    shuttle(&mut phone, &mut stack, now);
    assert_eq!(phone.socket(h).state(), tcp::State::Closed, "reset");
    assert_eq!(stack.flow_count(), 0);
    assert_eq!(stack.pending_count(), 0);
}

#[test]
fn held_syns_are_bounded_per_device_and_expire() {
    let now = Instant::now();
    let limits = Limits {
        pending_per_device: 4,
        ..Limits::default()
    };
    let mut stack = Stack::new(OWN, 16, limits, now);
    let mut phone = Phone::new(PHONE);
    for port in 0..10 {
        phone.connect(GRAFANA, 41000 + port);
    }
    let said = shuttle(&mut phone, &mut stack, now);
    let new = said
        .iter()
        .filter(|s| matches!(s, Inbound::NewTcp(_)))
        .count();
    let full = said
        .iter()
        .filter(|s| **s == Inbound::Dropped(Refusal::Full))
        .count();
    assert_eq!(new, 4);
    assert_eq!(full, 6);
    assert_eq!(stack.pending_count(), 4);
    // Another device is not held back by this one.
    let mut other = Phone::new(Ipv4Addr::new(100, 96, 0, 3));
    other.connect(GRAFANA, 42000);
    let said = shuttle(&mut other, &mut stack, now);
    assert!(matches!(said[0], Inbound::NewTcp(_)), "{said:?}");
    stack.poll(now + Duration::from_secs(21));
    assert_eq!(stack.pending_count(), 0);
    assert_eq!(stack.counters().pending_expired, 5);
}

#[test]
fn sources_outside_the_devices_range_and_fragments_are_dropped() {
    let now = Instant::now();
    let mut stack = Stack::new(OWN, 16, Limits::default(), now);
    // A device claiming a LAN address, and one claiming Warren's own.
    for spoof in [Ipv4Addr::new(192, 168, 1, 20), OWN] {
        let mut liar = Phone::new(spoof);
        liar.connect(GRAFANA, 43000);
        let said = shuttle(&mut liar, &mut stack, now);
        assert_eq!(said, vec![Inbound::Dropped(Refusal::Spoofed)]);
    }
    // A real device's SYN, made into a fragment.
    let mut phone = Phone::new(PHONE);
    phone.connect(GRAFANA, 43001);
    phone.poll();
    let mut syn = phone.wire.tx.pop_front().unwrap();
    syn[6] |= 0x20; // more fragments
    let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(&mut syn[..]);
    ip.fill_checksum();
    assert_eq!(
        stack.receive(&syn, now),
        Inbound::Dropped(Refusal::Fragment)
    );
    assert_eq!(stack.counters().spoofed, 2);
    assert_eq!(stack.counters().fragments, 1);
    assert_eq!(stack.pending_count(), 0);
}

#[test]
fn cutting_a_device_resets_its_flows() {
    let now = Instant::now();
    let mut stack = Stack::new(OWN, 16, Limits::default(), now);
    let mut phone = Phone::new(PHONE);
    let h = phone.connect(GRAFANA, 44000);
    shuttle(&mut phone, &mut stack, now);
    stack.accept(key(44000), now).unwrap();
    shuttle(&mut phone, &mut stack, now);
    assert_eq!(phone.socket(h).state(), tcp::State::Established);
    assert_eq!(stack.cut_device(PHONE, now), vec![key(44000)]);
    while let Some(p) = stack.transmit() {
        phone.wire.rx.push_back(p);
    }
    phone.poll();
    assert_eq!(phone.socket(h).state(), tcp::State::Closed);
    stack.reap();
    assert_eq!(stack.flow_count(), 0);
}

#[test]
fn a_udp_reply_is_a_valid_packet_for_the_device() {
    let now = Instant::now();
    let stack = Stack::new(OWN, 16, Limits::default(), now);
    let p = stack.udp_packet(
        SocketAddrV4::new(OWN, 53),
        SocketAddrV4::new(PHONE, 5353),
        b"answer",
    );
    let parsed = warren_netstack::parse(&p).unwrap();
    assert_eq!(parsed.proto, Proto::Udp);
    assert_eq!(parsed.dst, SocketAddrV4::new(PHONE, 5353));
    let (at, len) = parsed.payload;
    assert_eq!(&p[at..at + len], b"answer");
}

#[test]
fn a_half_open_flood_holds_few_sockets_and_they_time_out() {
    let now = Instant::now();
    let limits = Limits {
        pending_per_device: 3,
        ..Limits::default()
    };
    let mut stack = Stack::new(OWN, 16, limits, now);
    let mut phone = Phone::new(PHONE);
    for port in 0..10 {
        phone.connect(GRAFANA, 45000 + port);
    }
    // The phone never gets to answer a SYN-ACK: its SYNs are taken one at
    // a time, each accepted at once.
    phone.poll();
    let syns: Vec<Vec<u8>> = phone.wire.tx.drain(..).collect();
    let mut accepted = 0;
    let mut dropped = 0;
    for syn in &syns {
        match stack.receive(syn, now) {
            Inbound::NewTcp(k) => {
                stack.accept(k, now).unwrap();
                accepted += 1;
            }
            Inbound::Dropped(Refusal::Full) => dropped += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        (accepted, dropped),
        (3, 7),
        "three connections being set up at most"
    );
    assert_eq!(stack.flow_count(), 3);
    while stack.transmit().is_some() {}
    // Unanswered SYN-ACKs: the sockets give up and are reaped.
    for s in 1..=20 {
        stack.poll(now + Duration::from_secs(s));
        while stack.transmit().is_some() {}
    }
    stack.reap();
    assert_eq!(stack.flow_count(), 0);
}

/// An ICMP packet from `src` to `dst` (checksums right).
fn icmp(src: Ipv4Addr, dst: Ipv4Addr, repr: smoltcp::wire::Icmpv4Repr<'_>) -> Vec<u8> {
    warren_netstack::icmp_packet(src, dst, &repr)
}

#[test]
fn a_ping_is_handed_up_and_its_reply_comes_from_the_address_pinged() {
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Ipv4Packet};
    let now = Instant::now();
    let mut stack = Stack::new(OWN, 16, Limits::default(), now);
    let request = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 3,
        data: b"are you there",
    };
    let ping = icmp(PHONE, *GRAFANA.ip(), request);
    assert_eq!(
        stack.receive(&ping, now),
        Inbound::Echo(warren_netstack::Echo {
            src: PHONE,
            dst: *GRAFANA.ip()
        })
    );
    let reply = warren_netstack::echo_reply(&ping).expect("a reply");
    let caps = smoltcp::phy::ChecksumCapabilities::default();
    let ip = Ipv4Packet::new_checked(&reply[..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (*GRAFANA.ip(), PHONE));
    let icmp_packet = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        Icmpv4Repr::parse(&icmp_packet, &caps).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 3,
            data: b"are you there"
        }
    );
    // A ping claiming another source is a spoof; an echo reply, or any
    // other ICMP, is not carried; nothing of it reaches a table.
    let liar = icmp(Ipv4Addr::new(192, 168, 1, 20), *GRAFANA.ip(), request);
    assert_eq!(
        stack.receive(&liar, now),
        Inbound::Dropped(Refusal::Spoofed)
    );
    let stray = icmp(
        PHONE,
        *GRAFANA.ip(),
        Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 3,
            data: b"",
        },
    );
    assert_eq!(
        stack.receive(&stray, now),
        Inbound::Dropped(Refusal::Protocol)
    );
    assert_eq!(warren_netstack::echo_reply(&stray), None);
    let mut broken = ping.clone();
    let last = broken.len() - 1;
    broken[last] ^= 1; // the ICMP checksum no longer holds
    assert_eq!(
        stack.receive(&broken, now),
        Inbound::Dropped(Refusal::Protocol)
    );
    let c = stack.counters();
    assert_eq!((c.spoofed, c.protocol), (1, 2));
    assert_eq!((stack.flow_count(), stack.pending_count()), (0, 0));
}
