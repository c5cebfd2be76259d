//! Command-line options and the resolved configuration of one run.
//!
//! Every size has a full default (the sizes the issue asks for) and a
//! `--tiny` default (a run that finishes in seconds, for CI); a flag given
//! explicitly wins over both.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::driver::Limit;

/// PostgreSQL server the benchmark creates its database on.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Admin the server the benchmark starts is bootstrapped with.
pub const ADMIN_EMAIL: &str = "bench-admin@example.com";
/// A password every policy check accepts for the bench's accounts.
pub const PASSWORD: &str = "Bench-orchard-Lantern-91";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// The scenarios, in the order they run and are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Reference,
    Create,
    Update,
    Read,
    Mixed,
    Login,
    Rebuild,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Reference,
        Scenario::Create,
        Scenario::Update,
        Scenario::Read,
        Scenario::Mixed,
        Scenario::Login,
        Scenario::Rebuild,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Reference => "reference",
            Scenario::Create => "create",
            Scenario::Update => "update",
            Scenario::Read => "read",
            Scenario::Mixed => "mixed",
            Scenario::Login => "login",
            Scenario::Rebuild => "rebuild",
        }
    }
}

#[derive(Debug, Clone, Parser)]
#[command(name = "bench", about = "Benchmark a Tickets server over HTTP against plain SQL on the same store")]
pub struct Options {
    /// Store of the server the benchmark starts.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// PostgreSQL server on which `tickets_bench_<uuid>` is created and dropped.
    #[arg(long, env = "TICKETS_BENCH_PG", default_value = DEFAULT_PG_URL)]
    pub pg_url: String,
    /// Drive an already running server (loopback only) instead of starting one.
    #[arg(long)]
    pub target: Option<String>,
    /// With `--target`: the server's process id, to read its memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// With `--target`: the server's database, for the `reference` scenario.
    #[arg(long, env = "TICKETS_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// With `--target`: an admin account of that server.
    #[arg(long, env = "TICKETS_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "TICKETS_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Comma-separated scenarios, or `all`.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Concurrent clients (closed loop); a list runs each scenario at each.
    #[arg(long, value_delimiter = ',')]
    pub clients: Option<Vec<usize>>,
    /// How long each measurement runs, e.g. `10s` (default 10s).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Run each measurement for this many requests instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Unmeasured warm-up before each measurement (default 2s, tiny 0s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// Tickets stored before the read scenarios (default 100000).
    #[arg(long)]
    pub tickets: Option<usize>,
    /// Events in the store for the rebuild scenario (default 1000000).
    #[arg(long)]
    pub events: Option<usize>,
    /// Events on the one long-history ticket (default 1000).
    #[arg(long)]
    pub long_history: Option<usize>,
    /// Employees the tickets are spread over (default 20).
    #[arg(long)]
    pub employees: Option<usize>,
    /// Concurrent logins in the login scenario (default 4).
    #[arg(long)]
    pub login_clients: Option<usize>,
    /// Parallel tasks for seeding (default 16).
    #[arg(long)]
    pub seed_parallelism: Option<usize>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Small sizes and few requests: proves the benchmark works in seconds.
    #[arg(long)]
    pub tiny: bool,
    /// Keep the benchmark's database and data folder afterwards.
    #[arg(long)]
    pub keep_db: bool,
    /// Parent folder of the data folder of the server the benchmark starts (default: the temp folder).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Everything a run needs, defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub store: StoreKind,
    #[serde(skip)]
    pub pg_url: String,
    pub target: Option<String>,
    pub server_pid: Option<u32>,
    #[serde(skip)]
    pub database_url: Option<String>,
    pub admin_email: String,
    #[serde(skip)]
    pub admin_password: String,
    pub scenarios: BTreeSet<Scenario>,
    pub clients: Vec<usize>,
    pub limit: Limit,
    pub warmup: Duration,
    pub tickets: usize,
    pub events: usize,
    pub long_history: usize,
    pub employees: usize,
    pub login_clients: usize,
    pub login_accounts: usize,
    pub seed_parallelism: usize,
    pub json: Option<PathBuf>,
    pub tiny: bool,
    pub keep_db: bool,
    pub data_dir: PathBuf,
}

fn parse_scenarios(raw: &str) -> anyhow::Result<BTreeSet<Scenario>> {
    let mut set = BTreeSet::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.eq_ignore_ascii_case("all") {
            set.extend(Scenario::ALL);
        } else {
            let scenario = Scenario::from_str(part, true).map_err(|_| anyhow::anyhow!("unknown scenario {part:?}"))?;
            set.insert(scenario);
        }
    }
    if set.is_empty() {
        bail!("no scenario chosen");
    }
    Ok(set)
}

impl Config {
    /// Applies the full or tiny defaults to whatever was not given.
    ///
    /// # Errors
    /// Unknown scenarios, zero clients, or a non-loopback target.
    pub fn from_options(o: Options) -> anyhow::Result<Self> {
        let tiny = o.tiny;
        let pick = |given: Option<usize>, full: usize, small: usize| given.unwrap_or(if tiny { small } else { full });
        let limit = match (o.duration, o.requests) {
            (Some(duration), _) => Limit::Duration(duration),
            (None, Some(requests)) => Limit::Requests(requests.max(1)),
            (None, None) if tiny => Limit::Requests(12),
            (None, None) => Limit::Duration(Duration::from_secs(10)),
        };
        let clients = o.clients.unwrap_or_else(|| vec![if tiny { 2 } else { 16 }]);
        if clients.is_empty() || clients.contains(&0) {
            bail!("--clients must be at least 1");
        }
        if let Some(target) = &o.target {
            crate::gql::check_loopback(target)?;
        }
        let admin_email = o.admin_email.unwrap_or_else(|| ADMIN_EMAIL.to_owned());
        let admin_password = match (&o.target, o.admin_password) {
            (_, Some(password)) => password,
            (Some(_), None) => bail!("--target needs --admin-password (or TICKETS_ADMIN_PASSWORD)"),
            (None, None) => PASSWORD.to_owned(),
        };
        let employees = pick(o.employees, 20, 3).max(1);
        Ok(Config {
            store: o.store,
            pg_url: o.pg_url,
            target: o.target.map(|t| t.trim_end_matches('/').to_owned()),
            server_pid: o.server_pid,
            database_url: o.database_url,
            admin_email,
            admin_password,
            scenarios: parse_scenarios(&o.scenario).context("--scenario")?,
            clients,
            limit,
            warmup: o.warmup.unwrap_or(if tiny { Duration::ZERO } else { Duration::from_secs(2) }),
            tickets: pick(o.tickets, 100_000, 120).max(employees),
            events: pick(o.events, 1_000_000, 2_000),
            long_history: pick(o.long_history, 1000, 60).max(1),
            employees,
            login_clients: pick(o.login_clients, 4, 2).max(1),
            login_accounts: if tiny { 4 } else { 256 },
            seed_parallelism: pick(o.seed_parallelism, 16, 4).max(1),
            json: o.json,
            tiny,
            keep_db: o.keep_db,
            data_dir: o.data_dir.unwrap_or_else(std::env::temp_dir),
        })
    }

    pub fn runs(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The login scenario's own limit: logins cost ~30 ms of CPU each.
    pub fn login_limit(&self) -> Limit {
        match self.limit {
            Limit::Duration(d) => Limit::Duration(d),
            Limit::Requests(n) => Limit::Requests((n / 4).max(2)),
        }
    }
}
