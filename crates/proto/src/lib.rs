//! Warren's wire protocol, with no I/O.
//!
//! This crate owns every byte Warren puts on a tunnel link and every rule about
//! what a peer may send. It is *sans-IO*: functions take bytes, frames and `now`
//! and return decoded values, events and frames to transmit. Drivers (the
//! `warren-transport` crate) own sockets, tasks and timers.
//!
//! * [`handshake`]: the versioned greeting an agent sends and the edge's answer.
//! * [`frame`]: the frame codec used on multiplexed (TCP+TLS) links and on QUIC
//!   stream headers.
//! * [`open`]: what the edge asks an agent to connect to, and the agent's reply.
//! * [`session`]: the multiplexing state machine: stream ids, per-stream flow
//!   control with auto-tuned windows, keepalive, validation of hostile input.
//! * [`datagram`]: length-prefixed datagrams carried inside a stream (UDP).
//! * [`health`]: health-check plans the edge sends an agent, and its reports.
//! * [`secret`]: the one type every secret is held in.
//! * [`ssh_user`]: the edge's request to let a user into an SSH host, and
//!   the site's answer.
//!
//! Invariant: nothing here touches a socket, spawns a task or reads the clock.

pub mod datagram;
pub mod frame;
pub mod handshake;
pub mod health;
pub mod open;
pub mod secret;
pub mod session;
pub mod ssh_user;

pub use frame::{Frame, FrameError, StreamId};
pub use handshake::{Hello, Refusal, RefusalCode, Welcome, PROTOCOL_VERSION};
pub use open::{OpenReply, OpenRequest, RefuseReason, TargetProtocol};
pub use secret::Secret;
pub use session::{Event, ProtocolError, Role, Session, SessionConfig};
