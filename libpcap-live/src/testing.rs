//! Support for live tests: two network namespaces joined by a veth pair,
//! created with `ip` (iproute2) and deleted when the [`VethBed`] is dropped
//! (also on panic), and a frame injector (the frames themselves come from
//! `libpcap_analyzer::build::eth_udp4` / `eth_tcp4` with [`GEN_MAC`] and
//! [`NOBODY_MAC`]).
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
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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
    match output_with_deadline(Command::new("ip").arg("-V"), IP_DEADLINE) {
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

/// How long one `ip` (or `ip netns exec` of a short tool) may take.
const IP_DEADLINE: Duration = Duration::from_secs(30);

/// Waits for `child` at most `limit`, collecting what it writes to its
/// standard output and error when they are pipes. Past the limit the child
/// is killed (SIGKILL) and reaped, and the error says so with everything
/// it printed, so that a test fails with the evidence instead of hanging.
///
/// # Errors
/// [`io::ErrorKind::TimedOut`] past the limit; the error of waiting.
pub fn wait_with_deadline(mut child: Child, limit: Duration) -> io::Result<Output> {
    type Pipe = std::sync::mpsc::Receiver<Vec<u8>>;
    fn collect<R: io::Read + Send + 'static>(r: Option<R>) -> Option<Pipe> {
        r.map(|mut r| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                let _ = tx.send(v);
            });
            rx
        })
    }
    // the pipes close when the child ends, unless something it started
    // still holds them: then what came so far is not waited for long
    let take = |p: Option<Pipe>| {
        p.and_then(|p| p.recv_timeout(Duration::from_secs(5)).ok())
            .unwrap_or_default()
    };
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if t.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (take(out), take(err));
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "killed after {limit:?} (deadline); stdout: {:?}; stderr: {:?}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ),
        )),
    }
}

/// Runs `cmd` with no standard input and its output captured, for at most
/// `limit` ([`wait_with_deadline`]).
///
/// # Errors
/// When it cannot start, or runs past the limit.
pub fn output_with_deadline(cmd: &mut Command, limit: Duration) -> io::Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_with_deadline(child, limit)
}

/// Runs `ip ARGS`, turning a failure into an error with its stderr.
fn ip(args: &[&str]) -> io::Result<()> {
    let o = output_with_deadline(Command::new("ip").args(args), IP_DEADLINE)?;
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
            let _ =
                output_with_deadline(Command::new("ip").args(["netns", "del", ns]), IP_DEADLINE);
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
            let _ = output_with_deadline(
                Command::new("ip")
                    .args(["netns", "exec", ns, "ethtool", "-K", ifname])
                    .args([
                        "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off",
                    ]),
                IP_DEADLINE,
            );
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
        let o = output_with_deadline(
            Command::new("ip").args([
                "-n",
                &self.cap_ns,
                "-d",
                "link",
                "show",
                "dev",
                &self.cap_if,
            ]),
            IP_DEADLINE,
        )?;
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for VethBed {
    fn drop(&mut self) {
        for ns in [&self.gen_ns, &self.cap_ns] {
            // end what still runs inside our own namespaces (by PID), then delete them
            let pids =
                output_with_deadline(Command::new("ip").args(["netns", "pids", ns]), IP_DEADLINE);
            if let Ok(o) = pids {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ =
                        output_with_deadline(Command::new("kill").args(["-9", pid]), IP_DEADLINE);
                }
            }
            let _ =
                output_with_deadline(Command::new("ip").args(["netns", "del", ns]), IP_DEADLINE);
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
        let mut all = vec!["netns", "exec", self.cap_ns.as_str(), program];
        all.extend_from_slice(args);
        ip(&all)
    }
}

/// Why inline (NFQUEUE) tests cannot run here: [`skip_reason`], or no
/// working `iptables`; `None` when they can.
pub fn nfqueue_skip_reason() -> Option<String> {
    if let Some(r) = skip_reason() {
        return Some(r);
    }
    match output_with_deadline(Command::new("iptables").arg("-V"), IP_DEADLINE) {
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
