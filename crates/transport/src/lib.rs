//! Tunnel links: TCP+TLS with Warren's multiplexer, and QUIC; the agent dials, the edge accepts.
