//! Decoding stages above the wire views: link layer ([`link`]).

pub mod link;
