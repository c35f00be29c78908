//! Test harness: starts edges, agents and upstreams on 127.0.0.1:0 from config values.
