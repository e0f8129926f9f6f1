//! Saving the results of a run: every plugin on its own thread, files in
//! plugin order, a failing or panicking plugin named and the others saved.

use libpcap_analyzer::RunOutput;
use libpcap_analyzer::plugin::{Interest, Layers, Plugin, PluginError, PluginResult};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a test plugin does in `save_results`.
enum Save {
    /// Writes `NAME.txt`.
    Write,
    /// Writes `NAME.txt` only after the other side of the rendezvous is in
    /// its own `save_results` too (an error if it never comes: the saves
    /// were not side by side).
    Meet(Sender<()>, Arc<Mutex<Receiver<()>>>),
    Fail,
    Panic,
}

struct Saver(&'static str, Save);

impl Plugin for Saver {
    fn name(&self) -> &str {
        self.0
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }
    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        let err = |what: &str| PluginError::wrap(self.0, std::io::Error::other(what.to_string()));
        match &self.1 {
            Save::Write => {}
            Save::Meet(tx, rx) => {
                tx.send(()).map_err(|_| err("peer gone"))?;
                let rx = rx.lock().map_err(|_| err("lock"))?;
                rx.recv_timeout(Duration::from_secs(20))
                    .map_err(|_| err("the other plugin did not save at the same time"))?;
            }
            Save::Fail => return Err(err("disk full")),
            Save::Panic => panic!("save bomb"),
        }
        let path = dir.join(format!("{}.txt", self.0));
        std::fs::write(&path, self.0).map_err(|e| PluginError::wrap(self.0, e))?;
        Ok(vec![path])
    }
}

fn output(plugins: Vec<Box<dyn Plugin>>) -> RunOutput {
    RunOutput {
        plugins,
        stats: Default::default(),
        flows: Default::default(),
        warning: None,
        memory: Vec::new(),
        input_warnings: Vec::new(),
    }
}

#[test]
fn plugins_save_side_by_side_and_files_come_back_in_plugin_order() {
    let (tx1, rx1) = std::sync::mpsc::channel();
    let (tx2, rx2) = std::sync::mpsc::channel();
    let mut out = output(vec![
        Box::new(Saver("first", Save::Write)),
        // each waits for the other: sequential saves would time out
        Box::new(Saver("meet-a", Save::Meet(tx1, Arc::new(Mutex::new(rx2))))),
        Box::new(Saver("meet-b", Save::Meet(tx2, Arc::new(Mutex::new(rx1))))),
        Box::new(Saver("last", Save::Write)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let files = out.save_results(dir.path()).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["first.txt", "meet-a.txt", "meet-b.txt", "last.txt"]);
    for f in &files {
        assert!(f.exists(), "{}", f.display());
    }
}

#[test]
fn a_failing_or_panicking_plugin_is_named_and_the_others_are_saved() {
    let mut out = output(vec![
        Box::new(Saver("ok-1", Save::Write)),
        Box::new(Saver("bomb", Save::Panic)),
        Box::new(Saver("full", Save::Fail)),
        Box::new(Saver("ok-2", Save::Write)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let e = out.save_results(dir.path()).unwrap_err();
    // the first error in plugin order
    assert_eq!(e.plugin, "bomb");
    assert!(e.to_string().contains("save bomb"), "{e}");
    assert!(dir.path().join("ok-1.txt").exists());
    assert!(dir.path().join("ok-2.txt").exists());
}
