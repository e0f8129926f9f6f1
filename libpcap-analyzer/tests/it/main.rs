//! Integration tests of libpcap-analyzer (one test binary, a module per area).

mod corpus;
mod dns;
