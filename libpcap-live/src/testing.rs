//! Support for live tests: two network namespaces joined by a veth pair,
//! created with `ip` (iproute2) and deleted when the [`VethBed`] is dropped
//! (also on panic), a frame injector and small frame builders.
//!
//! Neither end of the veth pair is in the caller's namespace, so nothing
//! sent here can reach a real network. Frames go to the MAC address
//! [`NOBODY_MAC`]: the capture side sees them, its IP stack ignores them
//! (no replies), so the traffic a test sees is exactly what it sent. IPv6 is
//! disabled in both namespaces (no router solicitations or DAD frames), and
//! no IPv4 address is configured (no ARP).
//!
//! Needs root (or `CAP_SYS_ADMIN` and `CAP_NET_RAW`); [`skip_reason`]
//! probes the real calls so that a test can skip with one line.

use crate::sys;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// MAC address of the generator's end.
pub const GEN_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xfa, 0x00, 0x01];
/// MAC address of the capture end.
pub const CAP_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xfa, 0x00, 0x02];
/// A destination MAC address that belongs to nobody.
pub const NOBODY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xfa, 0x00, 0x99];

/// Why live tests cannot run here (no right to open packet sockets, no
/// `ip` binary, no right to create network namespaces), or `None`.
pub fn skip_reason() -> Option<String> {
    if let Err(e) = sys::packet_socket() {
        return Some(format!(
            "cannot open an AF_PACKET socket ({e}): needs root or CAP_NET_RAW"
        ));
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        Ok(_) | Err(_) => return Some("no working `ip` binary (iproute2)".to_string()),
    }
    // setns() needs CAP_SYS_ADMIN: probe it on a throwaway thread, into our own namespace
    let probe = std::thread::spawn(|| sys::enter_net_namespace(Path::new("/proc/self/ns/net")))
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("probe thread panicked")));
    if let Err(e) = probe {
        return Some(format!("setns: {e} (needs root or CAP_SYS_ADMIN)"));
    }
    None
}

/// Runs `f` on a new thread that has entered network namespace `ns` (a
/// name under `/run/netns`); sockets it opens stay in that namespace.
///
/// # Errors
/// When the namespace cannot be entered, or `f` panicked.
pub fn in_namespace<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            sys::enter_net_namespace(&path)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("thread in the namespace panicked")))
    })
}

/// Runs `ip ARGS`, turning a failure into an error with its stderr.
fn ip(args: &[&str]) -> io::Result<()> {
    let o = Command::new("ip").args(args).output()?;
    if o.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )))
    }
}

/// Two network namespaces, `gen_ns` with interface `gen_if` and `cap_ns`
/// with `cap_if`, joined by a veth pair; deleted on drop.
#[derive(Debug)]
pub struct VethBed {
    /// Namespace of the traffic generator.
    pub gen_ns: String,
    /// Namespace of the capture.
    pub cap_ns: String,
    /// Generator's interface.
    pub gen_if: String,
    /// Capture interface.
    pub cap_if: String,
}

static BEDS: AtomicU32 = AtomicU32::new(0);

impl VethBed {
    /// Creates a bed with names unique to this process and call (`tag`, a
    /// few letters, tells whose it is in `ip netns list`). Offloads are
    /// turned off with `ethtool` when it is installed, so the frames stay as
    /// sent.
    ///
    /// # Errors
    /// The first `ip` command that failed (the half-built bed is deleted).
    pub fn new(tag: &str) -> io::Result<VethBed> {
        let n = BEDS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        let bed = VethBed {
            gen_ns: format!("pal-{tag}-{pid}-{n}-gen"),
            cap_ns: format!("pal-{tag}-{pid}-{n}-cap"),
            // at most 15 characters: "p" + 6 hex digits of the pid + 2 of n + "g0"
            gen_if: format!("p{:x}{:x}g0", pid & 0xff_ffff, n & 0xff),
            cap_if: format!("p{:x}{:x}c0", pid & 0xff_ffff, n & 0xff),
        };
        bed.build()?;
        Ok(bed)
    }

    fn build(&self) -> io::Result<()> {
        // a bed left by a crashed process that had our pid: the names are ours
        for ns in [&self.gen_ns, &self.cap_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        ip(&["netns", "add", &self.gen_ns])?;
        ip(&["netns", "add", &self.cap_ns])?;
        for ns in [&self.gen_ns, &self.cap_ns] {
            in_namespace(ns, || -> io::Result<()> {
                // /proc/sys/net is the namespace of the writing thread
                for k in ["all", "default"] {
                    std::fs::write(format!("/proc/sys/net/ipv6/conf/{k}/disable_ipv6"), "1")?;
                }
                Ok(())
            })??;
        }
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        ip(&[
            "link",
            "add",
            &self.gen_if,
            "netns",
            &self.gen_ns,
            "address",
            &mac(GEN_MAC),
            "type",
            "veth",
            "peer",
            "name",
            &self.cap_if,
            "netns",
            &self.cap_ns,
            "address",
            &mac(CAP_MAC),
        ])?;
        for (ns, ifname) in [(&self.gen_ns, &self.gen_if), (&self.cap_ns, &self.cap_if)] {
            // optional: without ethtool the veth keeps its offloads, which
            // raw frames sent one by one do not meet
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "ethtool", "-K", ifname])
                .args([
                    "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off",
                ])
                .output();
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        Ok(())
    }

    /// Opens a raw socket on the generator's interface.
    ///
    /// # Errors
    /// When the namespace cannot be entered or the socket opened.
    pub fn sender(&self) -> io::Result<FrameSender> {
        let ifname = self.gen_if.clone();
        in_namespace(&self.gen_ns, move || {
            let fd = sys::packet_socket()?;
            sys::bind_packet(&fd, sys::interface_index(&ifname)?)?;
            Ok(FrameSender { fd })
        })?
    }

    /// `ip -n NS -d link show dev IF` of the capture interface.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn cap_link_details(&self) -> io::Result<String> {
        let o = Command::new("ip")
            .args([
                "-n",
                &self.cap_ns,
                "-d",
                "link",
                "show",
                "dev",
                &self.cap_if,
            ])
            .output()?;
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for VethBed {
    fn drop(&mut self) {
        for ns in [&self.gen_ns, &self.cap_ns] {
            // end what still runs inside our own namespaces (by PID), then delete them
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// IPv4 address [`VethBed::add_ipv4`] gives the generator's end.
pub const GEN_IP4: [u8; 4] = [10, 77, 0, 1];
/// IPv4 address [`VethBed::add_ipv4`] gives the capture end.
pub const CAP_IP4: [u8; 4] = [10, 77, 0, 2];

impl VethBed {
    /// Gives both ends an IPv4 address ([`GEN_IP4`], [`CAP_IP4`], /24), so
    /// that real sockets can talk across the pair (inline tests).
    ///
    /// # Errors
    /// The `ip` command that failed.
    pub fn add_ipv4(&self) -> io::Result<()> {
        let a = |ip: [u8; 4]| format!("{}.{}.{}.{}/24", ip[0], ip[1], ip[2], ip[3]);
        ip(&[
            "-n",
            &self.gen_ns,
            "addr",
            "add",
            &a(GEN_IP4),
            "dev",
            &self.gen_if,
        ])?;
        ip(&[
            "-n",
            &self.cap_ns,
            "addr",
            "add",
            &a(CAP_IP4),
            "dev",
            &self.cap_if,
        ])
    }

    /// Runs `PROGRAM ARGS` in the capture namespace (`ip netns exec`), e.g.
    /// an iptables rule.
    ///
    /// # Errors
    /// When it cannot run or fails (with its stderr).
    pub fn cap_exec(&self, program: &str, args: &[&str]) -> io::Result<()> {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.cap_ns, program])
            .args(args)
            .output()?;
        if o.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{program} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )))
        }
    }
}

/// Why inline (NFQUEUE) tests cannot run here: [`skip_reason`], or no
/// working `iptables`; `None` when they can.
pub fn nfqueue_skip_reason() -> Option<String> {
    if let Some(r) = skip_reason() {
        return Some(r);
    }
    match Command::new("iptables").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no working `iptables` (install the iptables package)".to_string()),
    }
}

/// A raw packet socket bound to the generator's interface.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
}

impl FrameSender {
    /// Sends one frame as it is.
    ///
    /// # Errors
    /// The OS error of `send`, or a short send.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = sys::send_frame(&self.fd, frame)?;
        if n != frame.len() {
            return Err(io::Error::other(format!(
                "sent {n} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }
}

/// The Internet checksum of `data` (RFC 1071), starting from `sum`.
fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let hi = u32::from(c.first().copied().unwrap_or(0));
        let lo = u32::from(c.get(1).copied().unwrap_or(0));
        sum += (hi << 8) | lo;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet II frame from [`GEN_MAC`] to [`NOBODY_MAC`], with an
/// optional 802.1Q tag (`vlan`: the VLAN id).
pub fn ethernet(vlan: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&NOBODY_MAC);
    f.extend_from_slice(&GEN_MAC);
    if let Some(vid) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet (no options, TTL 64, DF) carrying `payload` of protocol
/// `proto`, with its header checksum.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = checksum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn pseudo_sum(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    u32::from(!checksum(&p, 0))
}

/// An Ethernet/IPv4/UDP frame (valid checksums), optionally VLAN-tagged.
pub fn udp_frame(
    vlan: Option<u16>,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = checksum(&u, pseudo_sum(src, dst, 17, len));
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    ethernet(vlan, 0x0800, &ipv4(src, dst, 17, &u))
}

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// An Ethernet/IPv4/TCP frame (20-byte header, valid checksums).
#[allow(clippy::too_many_arguments)] // a frame's fields, named at the call
pub fn tcp_frame(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = checksum(&t, pseudo_sum(src, dst, 6, len));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ethernet(None, 0x0800, &ipv4(src, dst, 6, &t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_valid_checksums() {
        let f = udp_frame(None, [10, 0, 0, 1], [10, 0, 0, 2], 1000, 53, b"hello");
        assert_eq!(f.len(), 14 + 20 + 8 + 5);
        assert_eq!(checksum(&f[14..34], 0), 0, "IPv4 header checksum");
        let udp = &f[34..];
        assert_eq!(
            checksum(udp, pseudo_sum([10, 0, 0, 1], [10, 0, 0, 2], 17, udp.len())),
            0
        );
        let t = tcp_frame(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1,
            2,
            7,
            0,
            tcp_flags::SYN,
            b"",
        );
        let seg = &t[34..];
        assert_eq!(
            checksum(seg, pseudo_sum([10, 0, 0, 1], [10, 0, 0, 2], 6, seg.len())),
            0
        );
        let v = udp_frame(Some(100), [10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"");
        assert_eq!(&v[12..18], &[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
    }
}
