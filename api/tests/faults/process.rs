//! The `tickets` binary as a child process, configured only through the
//! environment variables the README lists, killed with SIGKILL and started
//! again on the same store. Each start logs to a file of its own, whose
//! tail a failing trial prints.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The server binary Cargo built for this test.
const EXE: &str = env!("CARGO_BIN_EXE_tickets");
/// How long a start may take (a debug build on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub const ADMIN_EMAIL: &str = "faults-admin@example.com";
pub const ADMIN_PASSWORD: &str = "Adm1n-orchard-Lantern";

/// Everything a server process is started with.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub data_dir: PathBuf,
    /// Where each start's log file goes.
    pub logs: PathBuf,
    jwt_secret: String,
    master_keys: String,
}

impl Config {
    /// A server on `database_url` with fresh secrets; attachments and the
    /// SQLite file (when it is the default) under `data_dir`.
    pub fn new(database_url: String, data_dir: &Path, logs: &Path) -> Self {
        std::fs::create_dir_all(logs).expect("a log folder");
        Self {
            database_url,
            data_dir: data_dir.to_owned(),
            logs: logs.to_owned(),
            jwt_secret: format!("faults-{}", uuid::Uuid::new_v4().simple()),
            master_keys: commands::cipher::MasterKeys::generate("faults").1,
        }
    }

    fn command(&self, log: &Path) -> Command {
        let mut command = Command::new(EXE);
        // Only these settings: none of the caller's own server settings.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TICKETS_") || key.starts_with("AWS_") || key == "DATABASE_URL" {
                command.env_remove(key.as_ref());
            }
        }
        let file = std::fs::File::create(log).expect("a log file");
        command
            .env("DATABASE_URL", &self.database_url)
            .env("TICKETS_DATA_DIR", &self.data_dir)
            .env("TICKETS_LISTEN", "127.0.0.1:0")
            .env("TICKETS_JWT_SECRET", &self.jwt_secret)
            .env("TICKETS_MASTER_KEYS", &self.master_keys)
            .env("RUST_LOG", "warn,api=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a log file"))
            .stderr(file)
            .kill_on_drop(true);
        command
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()))
    }
}

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server (with the bootstrap admin) and waits until
    /// `/readyz` answers 200.
    ///
    /// # Panics
    /// When it exits or is not ready in time; the message holds its log.
    pub async fn start(config: &Config) -> Self {
        let log = config.log_path("serve");
        let mut command = config.command(&log);
        command.env("TICKETS_ADMIN_EMAIL", ADMIN_EMAIL).env("TICKETS_ADMIN_PASSWORD", ADMIN_PASSWORD);
        let mut child = command.spawn().expect("the server process starts");
        let started = Instant::now();
        let base = loop {
            if let Some(address) = listening_address(&log) {
                break format!("http://{address}");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server exited ({status}) before listening:\n{}", tail(&log));
            }
            assert!(started.elapsed() < START_TIMEOUT, "the server did not listen in time:\n{}", tail(&log));
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let server = Self { child, base, log };
        let within = START_TIMEOUT.saturating_sub(started.elapsed());
        assert!(server.ready_within(within).await, "the server was not ready in time:\n{}", tail(&server.log));
        server
    }

    /// Whether `/readyz` answers 200 within `within`.
    pub async fn ready_within(&self, within: Duration) -> bool {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("a client");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(answer) = client.get(format!("{}/readyz", self.base)).send().await {
                if answer.status().is_success() {
                    return true;
                }
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`, and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL is sent");
        self.child.wait().await.expect("the killed server is reaped");
    }

    /// The end of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// Runs `tickets <args>` (with no server running on the store) and returns
/// its standard output.
///
/// # Panics
/// When it fails; the message holds its output.
pub async fn run_command(config: &Config, args: &[&str]) -> String {
    let log = config.log_path(args[0]);
    let mut command = config.command(&log);
    command.args(args).stdout(Stdio::piped());
    let output = tokio::time::timeout(START_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("tickets {args:?} did not finish in time:\n{}", tail(&log)))
        .expect("the command runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "tickets {args:?} failed ({}): {stdout}\n{}", output.status, tail(&log));
    stdout
}

/// The address the log's `listening` line names, if it is there yet.
fn listening_address(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|line| line.contains("listening"))?;
    let rest = &line[line.find("address=")? + "address=".len()..];
    Some(rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect())
}

/// The last 40 lines of a log.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
