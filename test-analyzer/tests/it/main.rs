//! Integration tests of test-analyzer: the golden cases of the repository
//! and the command line.

// helpers shared by the tests fail loudly, like the tests themselves
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;
mod cli;

use std::path::{Path, PathBuf};

/// The repository's golden cases.
pub(crate) fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cases")
}

/// A fixture capture of the repository.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/pcap")
        .join(name)
}

/// A copy of the case `name` in a temporary directory, with its pcap path
/// made absolute.
pub(crate) fn copy_case(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = cases_dir().join(name);
    let dst = tmp.path().join(name);
    std::fs::create_dir_all(dst.join("expected")).unwrap();
    let spec = std::fs::read_to_string(src.join("case.toml")).unwrap();
    let abs = src.join("../../pcap").canonicalize().unwrap();
    let spec = spec.replace("../../pcap", &abs.display().to_string());
    std::fs::write(dst.join("case.toml"), spec).unwrap();
    for e in std::fs::read_dir(src.join("expected")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("expected").join(e.file_name())).unwrap();
    }
    tmp
}
