//! A blob is durable before the event that refers to it: when the event
//! becomes visible the file is complete under its name, and its bytes and
//! its folder entry were synced to disk first, so a power loss cannot
//! leave the event pointing at a missing or truncated file. A power loss
//! cannot be staged in a test, so the syncs are watched with `strace`,
//! attached to this whole process: a binary of its own, since a process
//! forked by another test while traced can stall.

// The shared harnesses; this binary uses a few of their helpers.
#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "attachments/common.rs"]
#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::Mutex;

use test_support::Store;

use crate::common::{add_ok, blob_path, pdf_of_size, sha256_hex, File};
use crate::support::{both_stores, TestApp};

/// One tracer at a time: a second one cannot attach to a traced process.
static TRACING: Mutex<()> = Mutex::const_new(());

/// `strace` attached to this test process, logging file syncs and renames.
struct Trace {
    child: Option<Child>,
    log: PathBuf,
}

impl Trace {
    async fn attach(log: PathBuf) -> Self {
        let pid = std::process::id().to_string();
        let calls = "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat";
        let child = Command::new("strace")
            .args(["-f", "-qq", "-y", "-e", calls, "-o"])
            .arg(&log)
            .args(["-p", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace is needed to watch the blob store sync (apt-get install strace)");
        let trace = Self { child: Some(child), log };
        for _ in 0..400 {
            if every_thread_traced() {
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("strace did not attach to every thread");
    }

    /// Detaches and returns the log.
    fn finish(mut self) -> String {
        self.detach();
        std::fs::read_to_string(&self.log).expect("the strace log")
    }

    fn detach(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT makes strace detach cleanly; a killed strace could
            // leave threads stopped.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        self.detach();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn every_thread_traced() -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return false };
    tasks.flatten().all(|task| {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        status.lines().any(|line| line.strip_prefix("TracerPid:").is_some_and(|pid| pid.trim() != "0"))
    })
}

/// The index of the first line of `log` that is a call to one of `calls`
/// on a file descriptor open on a path `matches` accepts.
fn sync_of(log: &[&str], calls: &[&str], matches: impl Fn(&str) -> bool) -> Option<usize> {
    log.iter().position(|line| {
        calls.iter().any(|call| {
            line.split_once(&format!("{call}("))
                .and_then(|(_, rest)| rest.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .is_some_and(|(path, _)| matches(path))
        })
    })
}

async fn uploads_are_durable_before_their_event(store: Store) {
    let app = TestApp::spawn(store).await;
    let reporter = app.register("reporter@example.com").await;
    let ticket = app.create_ticket(&reporter.token, "Durable evidence").await;
    let file = File::new("large.pdf", "application/pdf", pdf_of_size(2 * 1024 * 1024));
    let blob = blob_path(&app, &file.sha256());

    assert!(
        Command::new("strace").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success()),
        "strace is needed to watch the blob store sync (apt-get install strace)"
    );
    let tracing = TRACING.lock().await;
    let trace = Trace::attach(app.settings.data_dir.with_extension("strace")).await;
    // The first moment the event is visible, the blob must be whole.
    let watch = async {
        loop {
            let events = app.count("SELECT COUNT(*) FROM events WHERE event_type = 'AttachmentAdded'").await;
            if events > 0 {
                return std::fs::read(&blob).ok();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let (attachment, seen) = tokio::join!(add_ok(&app, &reporter.token, &ticket, &file), watch);
    let log = trace.finish();
    drop(tracing);
    assert_eq!(attachment["sha256"], file.sha256());
    let seen = seen.expect("the blob exists when its event is visible");
    assert_eq!(sha256_hex(&seen), file.sha256(), "the blob is complete when its event is visible");

    let log: Vec<&str> = log.lines().collect();
    let blob_name = blob.to_string_lossy().into_owned();
    let folder = blob.parent().map(Path::to_string_lossy).expect("a folder").into_owned();
    let is_blob = |path: &str| path == blob_name || path.strip_prefix(&blob_name).is_some_and(|s| s.starts_with('#'));
    let data = sync_of(&log, &["fsync", "fdatasync"], is_blob);
    assert!(data.is_some(), "the blob's bytes were never synced:\n{}", log.join("\n"));
    let renamed = log.iter().position(|line| line.contains("rename") && line.contains(&format!("\"{blob_name}\"")));
    let renamed = renamed.unwrap_or_else(|| panic!("the blob was not renamed into place:\n{}", log.join("\n")));
    let entry = sync_of(&log[renamed..], &["fsync"], |path| path == folder);
    assert!(entry.is_some(), "the blob's folder was not synced after it was named:\n{}", log.join("\n"));
    app.shutdown().await;
}

both_stores!(uploads_are_durable_before_their_event);
