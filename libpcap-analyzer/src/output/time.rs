//! Times as text: RFC 3339 with nanoseconds (`2020-06-10T09:19:54.740079000Z`)
//! and Zeek's epoch seconds with microseconds (`1591780794.740079`), written
//! straight into a buffer.

use libpcap_tools::Timestamp;

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn push_digits(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut v = v;
    let mut i = buf.len();
    while v > 0 && i > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = buf.len().saturating_sub(width).min(i);
    out.extend_from_slice(&buf[start..]);
}

/// The two digits of `v` (below 100).
fn two_digits(v: u64) -> [u8; 2] {
    [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]
}

/// Appends `ts` as RFC 3339 UTC with nine fraction digits. Years outside
/// 0000–9999 (which no capture format can hold) are clamped to them.
pub fn push_rfc3339(out: &mut Vec<u8>, ts: Timestamp) {
    let secs = ts.secs();
    let nanos = u64::from(ts.subsec_nanos());
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u64;
    // filled in place, then copied once: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
    let mut t = *b"0000-00-00T00:00:00.000000000Z";
    for (at, v) in [
        (0, y / 100),
        (2, y % 100),
        (5, u64::from(m)),
        (8, u64::from(d)),
        (11, sod / 3600),
        (14, sod / 60 % 60),
        (17, sod % 60),
    ] {
        if let Some(pair) = t.get_mut(at..at + 2) {
            pair.copy_from_slice(&two_digits(v));
        }
    }
    let mut n = nanos;
    for c in t.get_mut(20..29).unwrap_or_default().iter_mut().rev() {
        *c = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&t);
}

/// `ts` as an RFC 3339 string.
pub fn rfc3339(ts: Timestamp) -> String {
    let mut v = Vec::with_capacity(30);
    push_rfc3339(&mut v, ts);
    String::from_utf8(v).unwrap_or_default()
}

/// Appends `ns` nanoseconds as decimal seconds with `digits` fraction
/// digits (truncated; negative values with a leading `-`).
pub fn push_seconds(out: &mut Vec<u8>, ns: i64, digits: u32) {
    if ns < 0 {
        out.push(b'-');
    }
    let abs = ns.unsigned_abs();
    let secs = abs / 1_000_000_000;
    let frac = abs % 1_000_000_000;
    push_digits(out, secs, 1);
    if digits > 0 {
        out.push(b'.');
        let digits = digits.min(9);
        let scaled = frac / 10u64.pow(9 - digits);
        push_digits(out, scaled, digits as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        let t = |s: i64, n: i64| rfc3339(Timestamp::from_secs_nanos(s, n));
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            t(1_591_780_794, 740_079_000),
            "2020-06-10T09:19:54.740079000Z"
        );
        // leap day, end of a leap year, the 2038 and 2106 limits of pcap
        assert_eq!(t(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(
            t(1_735_689_599, 999_999_999),
            "2024-12-31T23:59:59.999999999Z"
        );
        assert_eq!(t(2_147_483_647, 0), "2038-01-19T03:14:07.000000000Z");
        assert_eq!(t(4_294_967_295, 0), "2106-02-07T06:28:15.000000000Z");
        // before the epoch
        assert_eq!(t(-1, 500_000_000), "1969-12-31T23:59:59.500000000Z");
        assert_eq!(t(-86_400 * 365, 0), "1969-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn rfc3339_agrees_with_chrono() {
        // random instants over the whole range of a Timestamp (i64
        // nanoseconds: 1677 to 2262), and its ends
        let mut rng = libpcap_tools::synth::Rng(5);
        let lo = i64::MIN / 1_000_000_000 + 1;
        let hi = i64::MAX / 1_000_000_000 - 1;
        let mut cases = vec![(lo, 0), (hi, 999_999_999), (0, 0), (-1, 1)];
        for _ in 0..20_000 {
            let s = lo + (rng.next_u64() % (hi - lo) as u64) as i64;
            cases.push((s, (rng.next_u64() % 1_000_000_000) as i64));
        }
        for (s, n) in cases {
            let want = chrono::DateTime::from_timestamp(s, n as u32)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.9fZ")
                .to_string();
            assert_eq!(rfc3339(Timestamp::from_secs_nanos(s, n)), want, "{s} {n}");
        }
    }

    #[test]
    fn rfc3339_agrees_with_date_over_a_sweep_of_days() {
        // against the days-to-date rule checked the slow way
        let mut y = 1970i64;
        let mut m = 1u32;
        let mut d = 1u32;
        let dim = |y: i64, m: u32| match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            _ => 28,
        };
        for day in 0..80_000i64 {
            assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
            d += 1;
            if d > dim(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn seconds_keep_the_asked_digits() {
        let s = |ns: i64, d: u32| {
            let mut v = Vec::new();
            push_seconds(&mut v, ns, d);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(s(1_591_780_794_740_079_123, 6), "1591780794.740079");
        assert_eq!(s(1_500, 6), "0.000001");
        assert_eq!(s(2_000_000_000, 9), "2.000000000");
        assert_eq!(s(-1_500_000_000, 3), "-1.500");
        assert_eq!(s(7_000_000_000, 0), "7");
    }
}
