//! Decoding stages above the wire views: link layer ([`link`]) and
//! UDP-borne tunnels ([`tunnel`]).

pub mod link;
pub mod tunnel;
