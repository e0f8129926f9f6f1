//! Integration tests of pcap-rewrite (one binary, a module per area).

// test helpers outside #[test] functions may unwrap and panic: a failure is a test failure
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod capture_filter;
mod cli;
mod common;
mod convert;
mod filters;
mod frag;
mod malformed;
mod roundtrip;
mod safety;
mod split;
mod tcpdump_filter;
