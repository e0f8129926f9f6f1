//! Arbitrary bytes as one frame through the analyzer with every built-in
//! plugin; the first byte chooses the link type and the configuration (see
//! `pal_fuzz::Setup`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pal_fuzz::{Setup, T0, analyzer, finish, packet};

fuzz_target!(|data: &[u8]| {
    let Some((&b, frame)) = data.split_first() else {
        return;
    };
    let setup = Setup::from_byte(b);
    let mut a = analyzer(setup.config());
    let ts = Some(libpcap_tools::Timestamp(T0));
    a.handle_packet(&packet(setup, 0, ts, frame));
    assert_eq!(a.stats().packets, 1);
    finish(a);
});
