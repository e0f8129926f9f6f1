//! Arbitrary bytes as a DNS message (UDP payload) and as a DNS-over-TCP
//! stream, with the JSON line the `dns` plugin writes for each message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_analyzer::plugins::dns::dns_json;
use libpcap_analyzer::proto::dns::{parse_dns_message, parse_dns_tcp_stream, rr_type_name};
use libpcap_tools::{FiveTuple, FlowId, Timestamp, ipproto};
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let key = FiveTuple {
        src: IpAddr::from([10, 0, 0, 1]),
        dst: IpAddr::from([10, 0, 0, 2]),
        src_port: 40000,
        dst_port: 53,
        proto: ipproto::UDP,
    };
    let single = parse_dns_message(data);
    // the same message behind a TCP length prefix decodes the same
    if let Ok(len) = u16::try_from(data.len()) {
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(data);
        let (msgs, consumed) = parse_dns_tcp_stream(&framed);
        assert_eq!(consumed, framed.len());
        assert_eq!(msgs.as_slice(), std::slice::from_ref(&single));
    }
    match single {
        Ok(m) => {
            let v = dns_json(Some(Timestamp(1)), FlowId(1), &key, &m);
            std::hint::black_box(v.to_string());
            for r in m.answers.iter().chain(&m.authorities).chain(&m.additionals) {
                std::hint::black_box(rr_type_name(r.rtype));
            }
        }
        Err(e) => {
            std::hint::black_box(e.to_string());
        }
    }
    let (msgs, consumed) = parse_dns_tcp_stream(data);
    assert!(consumed <= data.len());
    for m in msgs {
        let text = match m {
            Ok(m) => serde_json::to_string(&m).unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        std::hint::black_box(text);
    }
});
