//! The store under test, and the application in this process that seeds
//! it through the write side before the server process (see `child`)
//! takes over; the measured traffic never reaches this one.
//!
//! It runs on a tokio runtime of its own (one worker per core), apart from
//! the runtime that drives the seeding.
//!
//! On PostgreSQL a fresh database `tickets_bench_<uuid>` is created and
//! dropped again at the end; on SQLite a fresh data folder is used.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use api::config::Settings;
use api::http::Application;
use api::state::AppState;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::{Config, StoreKind};

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub at: String,
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the most it was ever resident.
    pub peak_kib: u64,
}

/// Reads VmRSS and VmHWM of `pid` (this process when `None`).
pub fn memory(pid: Option<u32>, at: &str) -> Option<Memory> {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |pid| format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    };
    Some(Memory { at: at.to_owned(), rss_kib: field("VmRSS:")?, peak_kib: field("VmHWM:")? })
}

/// Where the server's data lives, so it can be removed afterwards.
enum Place {
    Postgres { admin_url: String, name: String, dir: PathBuf },
    Sqlite { dir: PathBuf },
}

/// The seeding application, serving in this process until stopped.
pub struct InProcess {
    runtime: Option<Runtime>,
    handle: Handle,
    pub app: AppState,
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    place: Place,
}

/// `admin_url` with its database name replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (url, query) = admin_url.split_once('?').map_or((admin_url, None), |(u, q)| (u, Some(q)));
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let base = match url[authority_start..].find('/') {
        Some(slash) => &url[..authority_start + slash],
        None => url,
    };
    query.map_or_else(|| format!("{base}/{name}"), |q| format!("{base}/{name}?{q}"))
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await?;
    let _ = admin.close().await;
    Ok(())
}

async fn prepare(config: &Config) -> anyhow::Result<(Place, String, PathBuf)> {
    let id = Uuid::new_v4().simple().to_string();
    let dir = config.data_dir.join(format!("tickets-bench-{id}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match config.store {
        StoreKind::Sqlite => {
            let url = format!("sqlite://{}", dir.join("tickets.db").display());
            Ok((Place::Sqlite { dir: dir.clone() }, url, dir))
        }
        StoreKind::Postgres => {
            let name = format!("tickets_bench_{id}");
            crate::cpu::watch_database(&name);
            let mut admin = PgConnection::connect(&config.pg_url)
                .await
                .with_context(|| format!("cannot reach PostgreSQL at {} (--pg-url)", config.pg_url))?;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
            let _ = admin.close().await;
            let url = database_url(&config.pg_url, &name);
            Ok((Place::Postgres { admin_url: config.pg_url.clone(), name, dir: dir.clone() }, url, dir))
        }
    }
}

impl InProcess {
    /// Creates the store, builds the application on port 0 and serves it.
    ///
    /// # Errors
    /// When the store cannot be created or the application does not build.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("tickets-server")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (place, database_url, data_dir) = prepare(config).await?;
        let settings = Settings::for_tests(database_url, data_dir);
        let build = settings.clone();
        let built = handle
            .spawn(async move {
                let application = Application::build(build).await?;
                let app = application.state().app.clone();
                let (stop, stopped) = oneshot::channel::<()>();
                let task = tokio::spawn(application.run_until(async move {
                    let _ = stopped.await;
                }));
                anyhow::Ok((app, stop, task))
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|built| built);
        let (app, stop, task) = match built {
            Ok(built) => built,
            Err(error) => {
                remove(&place, false).await;
                runtime.shutdown_background();
                return Err(error.context("the application did not build"));
            }
        };
        Ok(Self { runtime: Some(runtime), handle, app, settings, stop: Some(stop), task: Some(task), place })
    }

    /// Runs `work` on the server's runtime, where its pools live.
    ///
    /// # Errors
    /// When the task panics.
    pub async fn on_server<F>(&self, work: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(self.handle.spawn(work).await?)
    }

    /// Stops serving and the projector, and closes the pool.
    ///
    /// # Errors
    /// When the server failed while serving.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task).await.context("the server did not stop")???;
        }
        Ok(())
    }

    /// Stops the server, its runtime, and removes its database unless `keep`.
    pub async fn cleanup(mut self, keep: bool) {
        if let Err(error) = self.stop().await {
            eprintln!("warning: {error:#}");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        remove(&self.place, keep).await;
    }

    /// Where the data is, for `--keep-db`.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Postgres { name, .. } => format!("PostgreSQL database {name}"),
            Place::Sqlite { dir } => format!("SQLite folder {}", dir.display()),
        }
    }
}

async fn remove(place: &Place, keep: bool) {
    if keep {
        return;
    }
    let dir = match place {
        Place::Postgres { admin_url, name, dir } => {
            if let Err(error) = drop_database(admin_url, name).await {
                eprintln!("warning: cannot drop database {name}: {error:#}");
            }
            dir
        }
        Place::Sqlite { dir } => dir,
    };
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_swap_the_name() {
        assert_eq!(database_url("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(database_url("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(database_url("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn this_process_has_memory() {
        let memory = memory(None, "now").expect("/proc/self/status is readable");
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
    }
}
