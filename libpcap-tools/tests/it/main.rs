//! Integration tests of libpcap-tools (one binary, a module per area).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod chunked;
mod common;
mod compressed;
mod compressed_cut;
mod corpus;
mod malformed;
mod roundtrip;
mod truncation;
