//! Integration tests of libpcap-analyzer (one test binary, a module per area).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // test helpers fail loudly

mod clock;
mod config;
mod conn_derived;
mod corpus;
mod counters;
mod dns;
mod engine;
mod fixtures;
mod live_stop;
mod memory;
mod save;
mod session;
mod tls;
mod tunnel_ports;
