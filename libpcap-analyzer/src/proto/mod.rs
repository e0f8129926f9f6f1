//! Pure application-protocol parsers.
//!
//! These modules have no dependency on the plugin API: they take bytes (a UDP
//! payload, a reassembled TCP stream prefix, a flow tuple) and return owned,
//! serializable values. None of them panics on malformed input.

pub mod community_id;
pub mod dns;
pub mod tls;
