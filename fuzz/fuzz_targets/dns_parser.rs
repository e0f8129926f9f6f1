//! Arbitrary bytes as a DNS message (UDP payload) and as a DNS-over-TCP
//! stream, with the `dns` record the plugin writes for each message: it
//! must be complete, decode back, and format as a JSON line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_analyzer::output::{Format, RowBuf, decode, schema::DNS, writer};
use libpcap_analyzer::plugins::dns::{Message, fill_row};
use libpcap_analyzer::proto::dns::{
    DnsMessage, parse_dns_message, parse_dns_message_into, parse_dns_tcp_stream, rr_type_name,
};
use libpcap_tools::{FiveTuple, FlowId, Timestamp, ipproto};
use std::net::IpAddr;

thread_local! {
    static REUSED: std::cell::RefCell<DnsMessage> = std::cell::RefCell::default();
}

fuzz_target!(|data: &[u8]| {
    let key = FiveTuple {
        src: IpAddr::from([10, 0, 0, 1]),
        dst: IpAddr::from([10, 0, 0, 2]),
        src_port: 40000,
        dst_port: 53,
        proto: ipproto::UDP,
    };
    let single = parse_dns_message(data);
    // decoding into a message that held the previous input (as the dns
    // plugin does, keeping its sections' room) gives the same message
    REUSED.with(|cell| {
        let mut reused = cell.borrow_mut();
        let again = parse_dns_message_into(data, &mut reused).map(|()| reused.clone());
        assert_eq!(again, single);
    });
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
            let mut row = RowBuf::new(&DNS);
            let msg = Message {
                ts: Some(Timestamp(1)),
                msg: m.clone(),
            };
            // as a query alone, a response alone and a transaction
            for (q, r) in [
                (Some(&msg), None),
                (None, Some(&msg)),
                (Some(&msg), Some(&msg)),
            ] {
                fill_row(&mut row, FlowId(1), &key, q, r);
                let bytes = row.finish().expect("a complete dns record");
                let mut vals = Vec::new();
                decode(&DNS, bytes, &mut vals).expect("the record decodes");
            }
            let bytes = row.finish().expect("a complete dns record");
            let mut vals = Vec::new();
            decode(&DNS, bytes, &mut vals).expect("the record decodes");
            let mut w = writer(Format::Jsonl, &DNS, Vec::new()).expect("writer");
            w.write_row(&vals).expect("a JSON line");
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
