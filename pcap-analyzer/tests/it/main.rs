//! Integration tests of the `pcap-analyzer` binary: they spawn it and check
//! its output, files and exit codes.

// helpers shared by the tests fail loudly, like the tests themselves
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod community_id;
mod corpus;
mod filter;
mod flows;
mod live;
mod loss;
mod nfqueue;
mod outputs;
mod privs;
mod schema;
mod signals;
mod stdout;
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A fixture capture of the repository (`testdata/pcap/`).
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/pcap")
        .join(name)
}

/// The binary, with a clean logging environment.
pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pcap-analyzer"));
    c.env_remove("PCAP_ANALYZER_LOG");
    c
}

/// Runs the binary with `args` (killed after 2 minutes).
pub(crate) fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    output_within(bin().args(args), Duration::from_secs(120))
}

/// Runs `cmd` (no standard input, output captured) and waits at most
/// `limit`; past it the process is killed and the test fails with what it
/// printed.
pub(crate) fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    libpcap_live::testing::output_with_deadline(cmd, limit)
        .unwrap_or_else(|e| panic!("{:?}: {e}", cmd.get_program()))
}

/// Runs the binary quietly with plugin `plugin` on `input`, its records
/// into `out`; the run must succeed (exit 0, or 3 for an input that ends
/// early, as some corpus captures do).
pub(crate) fn analyse_into(plugin: &str, out: &Path, input: &Path) {
    let o = run([
        "-q".as_ref(),
        "-p".as_ref(),
        plugin.as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        input.as_os_str(),
    ]);
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}: {}",
        input.display(),
        stderr(&o)
    );
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The shared corpus (`PAL_CORPUS`, else `../shared/corpus` next to the
/// workspace, or next to the folder of worktrees), or `None` after printing
/// SKIPPED.
pub(crate) fn corpus() -> Option<PathBuf> {
    libpcap_tools::synth::corpus_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}
