//! The privilege drop (`--user`, capabilities, `no_new_privs`) seen from
//! outside: each test reads `/proc/PID/status` of the running binary and
//! of every one of its threads (`/proc/PID/task/*/status`) while it
//! captures, reads or waits, and checks that the results, the periodic
//! report rewrites and `--stats-json` are still written. Live tests build
//! their own network namespaces. Without root (or `ip`, `iptables`, the
//! user `nobody`), each prints one `SKIP <test>: <reason>` line and passes.
//!
//! What the kernel requires after setup (see `libpcap_live::privs`): no
//! capability for `-i` (AF_PACKET) and files, `CAP_NET_ADMIN` (mask
//! `0x1000`) for `--nfqueue`, whose every verdict the kernel checks.

use crate::live::{Capture, Key, Row, now_ms, rows, stats_of, traffic};
use crate::{bin, fixture, output_within, stderr};
use libpcap_live::privs::{Keep, ProcStatus, TargetUser};
use libpcap_live::testing::VethBed;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// The user `nobody` with its groups, or `None` after a SKIP line.
fn nobody(test: &str) -> Option<TargetUser> {
    match TargetUser::resolve("nobody") {
        Ok(u) if u.uid == NOBODY => Some(u),
        Ok(u) => {
            eprintln!("SKIP {test}: user nobody has uid {}, not {NOBODY}", u.uid);
            None
        }
        Err(e) => {
            eprintln!("SKIP {test}: {e}");
            None
        }
    }
}

/// `true` when this process is root (the tests switch user from root).
fn root(test: &str) -> bool {
    let uid = libpcap_live::privs::effective_uid();
    if uid != 0 {
        eprintln!("SKIP {test}: needs root (uid {uid})");
    }
    uid == 0
}

/// A temporary directory others may enter (mode 0755), so that a user
/// switched to can reach an output directory inside it.
fn open_tmp() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// The status of process `pid` and of each of its threads, once it has at
/// least `threads` of them (10 s at most).
fn statuses(pid: u32, threads: usize) -> Vec<(String, ProcStatus)> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "pcap-analyzer", "pid {pid} is not the binary");
    let t = Instant::now();
    loop {
        let mut v = vec![(
            "process".to_string(),
            ProcStatus::read(Path::new(&format!("/proc/{pid}/status"))).unwrap(),
        )];
        for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(s) = ProcStatus::read(&e.path().join("status")) {
                v.push((format!("thread {name}"), s));
            }
        }
        if v.len() > threads || t.elapsed() > Duration::from_secs(10) {
            assert!(
                v.len() > threads,
                "{} threads, {threads} expected",
                v.len() - 1
            );
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks every status: ids of `user` (or root's), exactly `caps` in the
/// effective, permitted and bounding sets, none ambient or inheritable,
/// `no_new_privs`.
fn assert_dropped(all: &[(String, ProcStatus)], user: Option<&TargetUser>, caps: u64) {
    for (who, s) in all {
        let (uid, gid) = user.map_or((0, 0), |u| (u.uid, u.gid));
        assert_eq!(s.uid, [uid; 4], "{who}: {s:?}");
        assert_eq!(s.gid, [gid; 4], "{who}: {s:?}");
        if let Some(u) = user {
            let mut g = s.groups.clone();
            g.sort_unstable();
            assert_eq!(g, u.groups, "{who}: groups");
        }
        assert_eq!(
            (s.cap_eff, s.cap_prm, s.cap_bnd, s.cap_amb, s.cap_inh),
            (caps, caps, caps, 0, 0),
            "{who}: capabilities {s:?}"
        );
        assert!(s.no_new_privs, "{who}: NoNewPrivs 0");
    }
}

/// Waits (10 s at most) until `path` exists and `ok` accepts its text.
fn wait_for_file(path: &Path, ok: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && ok(&text)
        {
            return text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{} not written as expected",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn promiscuity(bed: &VethBed) -> u32 {
    let d = bed.cap_link_details().unwrap();
    d.split_whitespace()
        .skip_while(|w| *w != "promiscuity")
        .nth(1)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no promiscuity in {d}"))
}

#[test]
fn privs_live_capture_runs_as_nobody_without_capabilities() {
    let test = "privs_live_capture_runs_as_nobody_without_capabilities";
    let Some(user) = nobody(test) else {
        return;
    };
    let Some(bed) = crate::live::bed(test) else {
        return;
    };
    let (frames, want) = traffic();
    let tmp = open_tmp();
    let out = tmp.path().join("out");
    let stats = tmp.path().join("stats.json");
    let conf = tmp.path().join("periodic.conf");
    std::fs::write(&conf, "[plugin.connections]\ninterval = 0.3\n").unwrap();
    let t0 = now_ms();
    let cap = Capture::spawn(
        &bed,
        &[
            "-i",
            &bed.cap_if,
            "--user",
            "nobody",
            "-j",
            "2",
            "-c",
            conf.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        "capturing on",
    );
    // the main thread, 2 workers, the report writer
    let all = statuses(cap.pid(), 4);
    assert_dropped(&all, Some(&user), 0);
    // the directory this run created belongs to nobody
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), NOBODY);
    let tx = bed.sender().unwrap();
    for f in &frames {
        tx.send(f).unwrap();
    }
    // the periodic rewrite (every 0.3 s) shows every frame, written by nobody
    let report = out.join("connections.txt");
    let total: u64 = want.values().map(|r| r.packets).sum();
    wait_for_file(&report, |text| {
        text.lines().count() == want.len() + 1
            && rows(text, t0, now_ms())
                .values()
                .map(|r| r.packets)
                .sum::<u64>()
                == total
    });
    assert_eq!(std::fs::metadata(&report).unwrap().uid(), NOBODY);
    cap.interrupt();
    let (o, err) = cap.wait(Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(0), "{err}");
    let text = std::fs::read_to_string(&report).unwrap();
    assert_eq!(rows(&text, t0, now_ms()), want, "{text}");
    let s = stats_of(&stats);
    assert_eq!(s["packets"], total, "{s}");
    let p = &s["privileges"];
    assert_eq!(p["user"], "nobody", "{s}");
    assert_eq!(p["uid"], NOBODY, "{s}");
    assert_eq!(p["cap_effective"], "0000000000000000", "{s}");
    assert_eq!(p["no_new_privs"], true, "{s}");
    // this kernel has Landlock (6.18): confined to the output directory
    assert!(
        ["enforced", "partial", "not_supported"].contains(&p["landlock"].as_str().unwrap()),
        "{s}"
    );
    let log = std::fs::read_to_string(out.join("pcap-analyzer.log")).unwrap();
    assert!(
        log.contains("privileges dropped: user nobody (uid 65534"),
        "{log}"
    );
    // no warning but the summary's losses (the UDP payloads sent to port 53
    // are no DNS: the dns plugin counts them as malformed)
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && !l.contains("[pcap_analyzer::summary]")),
        "{log}"
    );
    // the sockets were closed by nobody: the promiscuous memberships are gone
    assert_eq!(promiscuity(&bed), 0);
}

#[test]
fn privs_inline_keeps_only_cap_net_admin_and_verdicts_still_pass() {
    let test = "privs_inline_keeps_only_cap_net_admin_and_verdicts_still_pass";
    let Some(user) = nobody(test) else {
        return;
    };
    let Some(bed) = crate::nfqueue::bed(test) else {
        return;
    };
    crate::nfqueue::queue_rule(&bed, "13");
    let r = crate::nfqueue::receiver(&bed, 7001);
    let tmp = open_tmp();
    let stats = tmp.path().join("stats.json");
    let t0 = now_ms();
    let cap = crate::nfqueue::inline(
        &bed,
        &[
            "--nfqueue",
            "13",
            "-j",
            "1",
            "-Z",
            "nobody",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    let all = statuses(cap.pid(), 2);
    assert_dropped(&all, Some(&user), 0x1000);
    assert_eq!(Keep::NetAdmin.mask(), 0x1000);
    let want: BTreeMap<Key, Row> =
        crate::nfqueue::send_flows(&bed, &[(46001, 7001, 25, 80), (46002, 7001, 10, 300)]);
    assert_eq!(crate::nfqueue::drain(&r), 35, "every datagram accepted");
    cap.interrupt();
    let (o, err) = cap.wait(Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("refused"), "{err}");
    let report = String::from_utf8(o.stdout).unwrap();
    assert_eq!(rows(&report, t0, now_ms()), want, "{report}");
    let s = stats_of(&stats);
    assert_eq!(s["nfqueue"]["accepted"], 35, "{s}");
    assert_eq!(
        s["privileges"]["capabilities_kept"][0], "CAP_NET_ADMIN",
        "{s}"
    );
    assert_eq!(s["privileges"]["cap_effective"], "0000000000001000", "{s}");
}

#[test]
fn privs_live_capture_as_root_without_user_drops_every_capability() {
    let test = "privs_live_capture_as_root_without_user_drops_every_capability";
    let Some(bed) = crate::live::bed(test) else {
        return;
    };
    let cap = Capture::spawn(
        &bed,
        &["-i", &bed.cap_if, "-j", "1", "--duration", "20"],
        "capturing on",
    );
    let all = statuses(cap.pid(), 1);
    assert_dropped(&all, None, 0);
    cap.interrupt();
    let (o, err) = cap.wait(Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(0), "{err}");
}

/// The packets of a capture file, counted by the reader library.
fn packets_in(path: &Path) -> u64 {
    let mut r =
        libpcap_tools::CaptureReader::open(path, &libpcap_tools::ReaderConfig::default()).unwrap();
    let mut n = 0;
    while r.next_packet().unwrap().is_some() {
        n += 1;
    }
    n
}

#[test]
fn privs_root_only_file_is_read_as_nobody() {
    let test = "privs_root_only_file_is_read_as_nobody";
    if !root(test) {
        return;
    }
    let Some(user) = nobody(test) else {
        return;
    };
    let tmp = open_tmp();
    let input: PathBuf = tmp.path().join("secret.pcap");
    std::fs::copy(fixture("sample.pcap"), &input).unwrap();
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = tmp.path().join("out");
    let stats = tmp.path().join("stats.json");
    // the file readable by root only, then standard input, which the run
    // waits on: meanwhile its credentials can be read
    let mut child = bin()
        .args(["-Z", "nobody", "-q", "-o"])
        .arg(&out)
        .arg("--stats-json")
        .arg(&stats)
        .arg(&input)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    // dropped once the file is open; reading stdin blocks until we write
    let t = Instant::now();
    while ProcStatus::read(Path::new(&format!("/proc/{pid}/status")))
        .map(|s| s.uid[1] != NOBODY)
        .unwrap_or(true)
    {
        assert!(t.elapsed() < Duration::from_secs(10), "no drop seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let all = statuses(pid, 1);
    assert_dropped(&all, Some(&user), 0);
    // nobody could not open the file now
    assert_eq!(std::fs::metadata(&input).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(&input).unwrap().mode() & 0o077, 0);
    let bytes = std::fs::read(fixture("sample.pcap")).unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let o = libpcap_live::testing::wait_with_deadline(child, Duration::from_secs(60)).unwrap();
    feeder.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stats_of(&stats);
    assert_eq!(s["packets"], 2 * packets_in(&fixture("sample.pcap")), "{s}");
    assert_eq!(s["privileges"]["uid"], NOBODY, "{s}");
    assert!(out.join("connections.txt").exists());
}

#[test]
fn privs_output_dir_not_writable_by_the_user_is_an_error_before_capture() {
    let test = "privs_output_dir_not_writable_by_the_user_is_an_error_before_capture";
    if !root(test) || nobody(test).is_none() {
        return;
    }
    let tmp = open_tmp();
    // root's, mode 0755: nobody may enter, not write
    let out = tmp.path().join("rootonly");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = output_within(
        bin()
            .args(["--user", "nobody", "-o"])
            .arg(&out)
            .arg(fixture("sample.pcap")),
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "output directory '{}' is not writable by user nobody (uid 65534)",
            out.display()
        )),
        "{err}"
    );
    // nothing was analysed: no report, no summary
    assert!(!out.join("connections.txt").exists());
    assert!(!err.contains("packets:"), "{err}");
    // live: the error comes before the capture is announced
    let Some(bed) = crate::live::bed(test) else {
        return;
    };
    let exe = bin().get_program().to_owned();
    let o = output_within(
        Command::new("ip")
            .args(["netns", "exec", &bed.cap_ns])
            .arg(exe)
            .args(["-i", &bed.cap_if, "--duration", "5", "-Z", "nobody", "-o"])
            .arg(&out),
        Duration::from_secs(60),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not writable by user nobody"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("capturing on"), "{}", stderr(&o));
}

#[test]
fn privs_unknown_user_and_user_without_root_are_usage_errors() {
    let sample = fixture("sample.pcap");
    let o = crate::run([
        "--user".as_ref(),
        "pal-no-such-user".as_ref(),
        "-q".as_ref(),
        sample.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--user pal-no-such-user: no user 'pal-no-such-user'"),
        "{}",
        stderr(&o)
    );
    // without root: as it is, or through setpriv when this process is root
    let mut c = if libpcap_live::privs::effective_uid() == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin().get_program());
        c
    } else {
        bin()
    };
    c.args(["-Z", "nobody", "-q"]).arg(fixture("sample.pcap"));
    let o = output_within(&mut c, Duration::from_secs(60));
    if o.status.code() == Some(127) || !stderr(&o).contains("pcap-analyzer") {
        eprintln!(
            "SKIP privs_unknown_user_and_user_without_root_are_usage_errors (without root): \
             setpriv unavailable: {}",
            stderr(&o)
        );
        return;
    }
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--user nobody: switching user needs root"),
        "{}",
        stderr(&o)
    );
}
