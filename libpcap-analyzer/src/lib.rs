//! PAL analysis engine: decoding, defragmentation, TCP reassembly, flows and
//! the plugin API.

pub mod wire;
