//! A scripted DNS server: A queries for one name are answered from a list
//! of addresses in turn (cycling), with a TTL of 0, so that each lookup may
//! get a different answer, as a rebinding attacker's server would give.
//! Every query is recorded with what was answered.
//!
//! UDP only (the answers are small, never truncated). AAAA queries for the
//! name get an empty NOERROR answer (the name has no IPv6 address), every
//! other name NXDOMAIN. The server runs on its own thread until dropped.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Query type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Query type AAAA (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;

/// One query the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The name asked for, lower case, without the final dot.
    pub name: String,
    /// The query type ([`TYPE_A`], [`TYPE_AAAA`], ...).
    pub qtype: u16,
    /// The address answered, for an A query of the scripted name.
    pub answer: Option<Ipv4Addr>,
}

/// A running scripted DNS server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Query>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Binds `bind` (e.g. `127.0.0.1:0`) and answers A queries for `name`
    /// with `answers[0]`, `answers[1]`, ... and round again, TTL 0.
    pub fn start(bind: SocketAddr, name: &str, answers: &[Ipv4Addr]) -> DnsServer {
        assert!(!answers.is_empty(), "a script needs at least one answer");
        let socket = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("binding {bind}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("local address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Script {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            answers: answers.to_vec(),
            next: 0,
        };
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || serve(socket, script, log, stop))
        };
        DnsServer {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every query so far, in order.
    pub fn queries(&self) -> Vec<Query> {
        self.log.lock().unwrap().clone()
    }

    /// The addresses handed out so far, in order (one per A query of the
    /// scripted name).
    pub fn answered(&self) -> Vec<Ipv4Addr> {
        self.queries().iter().filter_map(|q| q.answer).collect()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Script {
    name: String,
    answers: Vec<Ipv4Addr>,
    next: usize,
}

fn serve(
    socket: UdpSocket,
    mut script: Script,
    log: Arc<Mutex<Vec<Query>>>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some((reply, query)) = answer(&buf[..n], &mut script) {
            log.lock().unwrap().push(query);
            let _ = socket.send_to(&reply, peer);
        }
    }
}

/// The reply to `packet`, and the query as recorded; none for a packet
/// that is not a standard query with one question (it is ignored).
fn answer(packet: &[u8], script: &mut Script) -> Option<(Vec<u8>, Query)> {
    let header = packet.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let (is_response, opcode) = (flags & 0x8000 != 0, (flags >> 11) & 0xF);
    let questions = u16::from_be_bytes([header[4], header[5]]);
    if is_response || opcode != 0 || questions != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // no compression in a query
        }
        labels.push(String::from_utf8_lossy(packet.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    let qclass = u16::from_be_bytes([*packet.get(at + 2)?, *packet.get(at + 3)?]);
    let question = &packet[12..at + 4];
    let name = labels.join(".");

    let known = name == script.name && qclass == 1;
    let given = (known && qtype == TYPE_A).then(|| {
        let a = script.answers[script.next % script.answers.len()];
        script.next += 1;
        a
    });
    // QR, the query's opcode and RD, AA, RA; NXDOMAIN for other names.
    let rcode = if known { 0 } else { 3 };
    let flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode;
    let mut reply = Vec::with_capacity(64);
    reply.extend_from_slice(&header[..2]);
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&u16::from(given.is_some()).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if let Some(a) = given {
        reply.extend_from_slice(&[0xC0, 12]); // the question's name
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes()); // IN
        reply.extend_from_slice(&0u32.to_be_bytes()); // TTL 0: never cached
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&a.octets());
    }
    Some((
        reply,
        Query {
            name,
            qtype,
            answer: given,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    /// Sends one query; returns the reply's id, rcode, answer count and the
    /// answered address with its TTL, if any.
    fn ask(
        server: &DnsServer,
        id: u16,
        name: &str,
        qtype: u16,
    ) -> (u16, u16, u16, Option<(Ipv4Addr, u32)>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let q = query(id, name, qtype);
        s.send_to(&q, server.addr()).unwrap();
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).unwrap();
        let r = &buf[..n];
        let id = u16::from_be_bytes([r[0], r[1]]);
        let flags = u16::from_be_bytes([r[2], r[3]]);
        assert_ne!(flags & 0x8000, 0, "a response");
        let answers = u16::from_be_bytes([r[6], r[7]]);
        assert_eq!(&r[12..q.len()], &q[12..], "the question is echoed");
        let rr = &r[q.len()..];
        let a = (answers == 1).then(|| {
            assert_eq!(&rr[..4], &[0xC0, 12, 0, 1]);
            let ttl = u32::from_be_bytes([rr[6], rr[7], rr[8], rr[9]]);
            (Ipv4Addr::new(rr[12], rr[13], rr[14], rr[15]), ttl)
        });
        (id, flags & 0xF, answers, a)
    }

    #[test]
    fn a_queries_get_the_scripted_answers_in_turn_with_ttl_0() {
        let (one, two) = (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2));
        let server = DnsServer::start("127.0.0.1:0".parse().unwrap(), "Rebind.Test.", &[one, two]);
        let got: Vec<_> = (0..4)
            .map(|i| ask(&server, 100 + i, "rebind.TEST", TYPE_A))
            .collect();
        assert_eq!(
            got,
            vec![
                (100, 0, 1, Some((one, 0))),
                (101, 0, 1, Some((two, 0))),
                (102, 0, 1, Some((one, 0))),
                (103, 0, 1, Some((two, 0))),
            ]
        );
        // No IPv6 address, and other names do not exist; neither moves the script.
        assert_eq!(ask(&server, 7, "rebind.test", TYPE_AAAA), (7, 0, 0, None));
        assert_eq!(ask(&server, 8, "other.test", TYPE_A), (8, 3, 0, None));
        assert_eq!(ask(&server, 9, "rebind.test", TYPE_A).3, Some((one, 0)));
        assert_eq!(server.answered(), vec![one, two, one, two, one]);
        let queries = server.queries();
        assert_eq!(queries.len(), 7);
        assert_eq!(
            queries[4],
            Query {
                name: "rebind.test".into(),
                qtype: TYPE_AAAA,
                answer: None
            }
        );
        assert_eq!(queries[5].name, "other.test");
    }

    #[test]
    fn what_is_not_a_query_is_ignored() {
        let mut script = Script {
            name: "x.test".into(),
            answers: vec![Ipv4Addr::new(127, 0, 0, 1)],
            next: 0,
        };
        let mut response = query(1, "x.test", TYPE_A);
        response[2] |= 0x80;
        let truncated = query(2, "x.test", TYPE_A)[..20].to_vec();
        for junk in [vec![1, 2, 3], response, truncated] {
            assert_eq!(answer(&junk, &mut script), None);
        }
        assert_eq!(script.next, 0);
    }
}
