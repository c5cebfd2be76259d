//! A PostgreSQL cluster of the test's own, in a temp folder on a free port,
//! so it can be stopped and started under load without touching the shared
//! one. `initdb` refuses to run as root, so the cluster belongs to the
//! `postgres` OS user. Dropping the guard stops the cluster and removes it,
//! also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// How a cluster is stopped (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Ends sessions, then a clean shutdown.
    Fast,
    /// Abandons everything; the next start recovers from the WAL.
    Immediate,
}

impl Stop {
    fn mode(self) -> &'static str {
        match self {
            Stop::Fast => "fast",
            Stop::Immediate => "immediate",
        }
    }
}

pub struct Cluster {
    bin: PathBuf,
    dir: TempDir,
    pub port: u16,
}

impl Cluster {
    /// Creates and starts a cluster.
    ///
    /// # Panics
    /// When PostgreSQL's programs are missing or fail; the message says why.
    pub fn start() -> Self {
        let bin = newest_bin();
        let dir = tempfile::Builder::new().prefix("tickets-faults-pg-").tempdir().expect("a temp folder");
        let owner = Command::new("chown").arg("postgres:postgres").arg(dir.path()).output().expect("chown runs");
        assert!(owner.status.success(), "cannot give the cluster's folder to postgres: {owner:?}");
        let port = free_port();
        let cluster = Self { bin, dir, port };
        let data = cluster.data();
        cluster.pg(&["initdb", "-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        cluster.start_again();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }

    /// Starts the stopped cluster and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", self.port, self.dir.path().display());
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.pg(&["pg_ctl", "start", "-w", "-t", "60", "-D", &self.data(), "-l", &log, "-o", &options]);
    }

    /// Stops the cluster in `mode`.
    pub fn stop(&self, mode: Stop) {
        self.pg(&["pg_ctl", "stop", "-w", "-t", "60", "-D", &self.data(), "-m", mode.mode()]);
    }

    /// Runs one of PostgreSQL's programs as `postgres`; panics unless it works.
    fn pg(&self, args: &[&str]) -> Output {
        let output = self.pg_unchecked(args);
        assert!(
            output.status.success(),
            "{args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            crate::process::tail(&self.dir.path().join("postgres.log"))
        );
        output
    }

    fn pg_unchecked(&self, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(args[0]))
            .args(&args[1..])
            .current_dir(self.dir.path())
            .output()
            .expect("runuser runs")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stopped already, or never started: either way nothing is left
        // running; the folder goes with `dir`.
        let _ = self.pg_unchecked(&["pg_ctl", "stop", "-w", "-D", &self.data(), "-m", "immediate"]);
    }
}

/// `/usr/lib/postgresql/<newest version>/bin`.
fn newest_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("PostgreSQL's programs are not under {}: {e}", root.display()))
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect("no PostgreSQL with initdb under /usr/lib/postgresql")
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}
