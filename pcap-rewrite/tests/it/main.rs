//! Integration tests of pcap-rewrite (one binary, a module per area).

mod cli;
mod common;
mod convert;
mod filters;
mod frag;
mod malformed;
mod roundtrip;
mod split;
