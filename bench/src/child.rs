//! The server under measurement runs in a process of its own: this binary
//! started again with a hidden first argument, building the same
//! `Application` the `tickets` binary serves, with the same allocator. So
//! the memory and CPU figures are the server's alone, never the load
//! generator's or the seeding's.
//!
//! Parent and child talk over pipes. The child writes one line to its
//! standard output at each step it reaches (`ready <port>`, `assembled`,
//! `rebuilt <events> <seconds>`) and stops, gracefully, when its standard
//! input closes. Settings travel in the environment variables `tickets`
//! itself reads (DESIGN §7), secrets included, never on the command line.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use api::config::{Cli, Settings};
use api::http::{assemble, Application};
use clap::Parser;
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};
use tracing_subscriber::EnvFilter;

use crate::server::{memory, Memory};

/// What a child process is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `tickets serve`: answers HTTP until its input closes.
    Serve,
    /// `tickets rebuild-projections`: empties the read models, projects
    /// every event again, reports, and waits for its input to close.
    Rebuild,
}

impl Role {
    const SERVE: &'static str = "__bench-serve";
    const REBUILD: &'static str = "__bench-rebuild";

    fn arg(self) -> &'static str {
        match self {
            Role::Serve => Self::SERVE,
            Role::Rebuild => Self::REBUILD,
        }
    }

    /// The role this process was started for, from its first argument.
    pub fn of_this_process() -> Option<Self> {
        match std::env::args_os().nth(1)?.to_str()? {
            Self::SERVE => Some(Role::Serve),
            Self::REBUILD => Some(Role::Rebuild),
            _ => None,
        }
    }
}

/// The child's whole life; its errors go to standard error, as `tickets`'s do.
pub fn main(role: Role) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from(Cli::parse_from(["tickets"]).options);
    let outcome =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
            |runtime| match role {
                Role::Serve => runtime.block_on(serve(settings)),
                Role::Rebuild => runtime.block_on(rebuild(settings)),
            },
        );
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench ({}): {error:#}", role.arg());
            ExitCode::FAILURE
        }
    }
}

/// One line to the parent; standard output flushes at each newline.
fn say(line: &str) {
    println!("{line}");
}

/// Completes when the parent closes this process's standard input.
async fn input_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(settings).await?;
    say(&format!("ready {}", application.port()));
    application.run_until(input_closed()).await
}

async fn rebuild(settings: Settings) -> anyhow::Result<()> {
    let (app, projector) = assemble(settings).await?;
    say("assembled");
    let started = Instant::now();
    let applied = projector.rebuild().await?;
    say(&format!("rebuilt {applied} {}", started.elapsed().as_secs_f64()));
    input_closed().await;
    app.read.close().await;
    Ok(())
}

/// A child process, seen from the benchmark.
pub struct Child {
    role: Role,
    process: tokio::process::Child,
    input: Option<ChildStdin>,
    output: Lines<BufReader<ChildStdout>>,
    pub pid: u32,
}

impl Child {
    /// Starts this binary as `role` on the store and secrets of `settings`.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(role: Role, settings: &Settings) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable to start the server")?;
        let mut command = tokio::process::Command::new(exe);
        command.arg(role.arg());
        // Only the settings below: none of the caller's own server settings.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TICKETS_") || key.starts_with("AWS_") || key == "DATABASE_URL" {
                command.env_remove(key.as_ref());
            }
        }
        command
            .env("DATABASE_URL", &settings.database_url)
            .env("TICKETS_LISTEN", settings.listen.to_string())
            .env("TICKETS_DATA_DIR", &settings.data_dir)
            .env("TICKETS_MAX_UPLOAD_BYTES", settings.max_upload_bytes.to_string())
            .env("TICKETS_BLOB_STORE", &settings.blob_store)
            .env("TICKETS_INTROSPECTION", settings.introspection.to_string());
        if let Some(secret) = &settings.jwt_secret {
            command.env("TICKETS_JWT_SECRET", secret.expose_secret());
        }
        if let Some(keys) = &settings.master_keys {
            command.env("TICKETS_MASTER_KEYS", keys.expose_secret());
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        let mut process = command.spawn().context("cannot start the server process")?;
        let pid = process.id().ok_or_else(|| anyhow!("the server process exited at once"))?;
        let input = process.stdin.take();
        let output = process.stdout.take().ok_or_else(|| anyhow!("no pipe from the server process"))?;
        Ok(Self { role, process, input, output: BufReader::new(output).lines(), pid })
    }

    /// Waits up to `within` for the child's next line, which must be `step`
    /// (then a space and the rest, answered) or the child has failed.
    ///
    /// # Errors
    /// When the child writes something else, exits, or takes too long.
    pub async fn reached(&mut self, step: &str, within: Duration) -> anyhow::Result<String> {
        let line = tokio::time::timeout(within, self.output.next_line())
            .await
            .with_context(|| format!("the {} process did not reach `{step}` within {within:?}", self.role.arg()))?
            .context("reading the server process's output")?;
        match line {
            Some(line) if line == step => Ok(String::new()),
            Some(line) => match line.strip_prefix(step).and_then(|rest| rest.strip_prefix(' ')) {
                Some(rest) => Ok(rest.to_owned()),
                None => bail!("the {} process said `{line}`, expected `{step}`", self.role.arg()),
            },
            None => {
                let status = self.process.wait().await?;
                bail!("the {} process exited ({status}) before `{step}`; its errors are above", self.role.arg())
            }
        }
    }

    /// The child's resident memory now and at its peak.
    pub fn memory(&self, at: &str) -> Option<Memory> {
        memory(Some(self.pid), at)
    }

    /// Closes the child's input, which stops it, and waits for it to exit.
    ///
    /// # Errors
    /// When it fails or does not stop within a minute (it is then killed).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.input.take());
        let status = match tokio::time::timeout(Duration::from_secs(60), self.process.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                let _ = self.process.kill().await;
                bail!("the {} process did not stop within a minute; killed", self.role.arg());
            }
        };
        if !status.success() {
            bail!("the {} process exited with {status}", self.role.arg());
        }
        Ok(())
    }
}

/// A server process, ready.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// From starting the process until `/readyz` first answered 200.
    pub startup: Duration,
    /// The projector lag `/readyz` reported then.
    pub lag: i64,
}

impl Served {
    /// Starts a server process on `settings` and waits until it is ready.
    ///
    /// # Errors
    /// When it does not start, or is not ready within two minutes.
    pub async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut child = Child::spawn(Role::Serve, settings)?;
        let port = child.reached("ready", Duration::from_secs(120)).await?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = started + Duration::from_secs(120);
        let body = loop {
            if let Ok(answer) = client.get(format!("{base}/readyz")).send().await {
                if answer.status().is_success() {
                    break answer.json::<serde_json::Value>().await?;
                }
            }
            if Instant::now() > deadline {
                bail!("the server at {base} was not ready within two minutes");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let startup = started.elapsed();
        let lag = body.get("projector_lag").and_then(serde_json::Value::as_i64).unwrap_or(-1);
        Ok(Self { child, base, startup, lag })
    }
}
