//! The edge's end of people's devices, sans I/O.
//!
//! A device's WireGuard tunnel carries IP packets. [`Stack`] takes them as
//! they come out of the tunnel and ends every flow here, the way a host
//! would: TCP in a real stack (smoltcp), UDP as datagrams keyed by their
//! four-tuple, pings as echo requests to answer or not. What the caller
//! gets back is not packets but flows — "a new
//! TCP connection from 100.96.0.2:51000 to 192.168.1.10:3000", "a datagram
//! for 192.168.1.10:53" — which it can ask the policy about and carry over
//! an ordinary stream to a site.
//!
//! Nothing here reads a socket or a clock: packets are pushed in
//! ([`Stack::receive`]), packets to send are pulled out
//! ([`Stack::transmit`]), and `now` is passed to every call that needs
//! time. Every table is bounded ([`Limits`]); what is dropped is counted
//! ([`Counters`]).
//!
//! Why smoltcp: it is a complete, maintained TCP (retransmission, window
//! scaling, SACK-less but correct) with no I/O of its own, which is what a
//! sans-I/O design needs; onetun ends WireGuard flows the same way.
//! gVisor's netstack (Tailscale's choice) is Go.

mod packet;
mod stack;

pub use packet::{echo_reply, icmp_packet, parse, parse_echo, Echo, Parsed, Proto, Refusal};
pub use stack::{Counters, FlowKey, Inbound, Limits, Stack, TcpStatus};
