//! The input cut into frames with timestamps (see `pal_fuzz::split_trace`)
//! through one analyzer with every built-in plugin, so that
//! defragmentation, TCP reassembly, the flow table and the DNS and TLS
//! plugins see state across packets.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pal_fuzz::{Setup, analyzer, finish, packet, split_trace};

fuzz_target!(|data: &[u8]| {
    let Some((&b, rest)) = data.split_first() else {
        return;
    };
    let setup = Setup::from_byte(b);
    let mut a = analyzer(setup.config());
    let frames = split_trace(rest);
    for (i, (ts, frame)) in frames.iter().enumerate() {
        a.handle_packet(&packet(setup, i as u64, *ts, frame));
    }
    assert_eq!(a.stats().packets, frames.len() as u64);
    finish(a);
});
