//! One benchmark run: start (or reach) the server, seed, run the chosen
//! scenarios at each client count, rebuild, and collect the report.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use api::state::AppState;
use commands::db::Db;
use commands::on_db;
use uuid::Uuid;

use crate::child::{Child, Role, Served};
use crate::config::{Config, Scenario, StoreKind};
use crate::gql::Gql;
use crate::reference;
use crate::report::{Compare, Report, Row, REF_PAGE, REF_SCAN, REF_WRITE};
use crate::scenarios::{self, Ctx};
use crate::seed::{self, Account, Tokens, World};
use crate::server::{memory, InProcess};

/// Progress goes to standard error; the report to standard output.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[bench] {}", format!($($arg)*)) };
}

/// How tokens are obtained before each client count.
enum Auth {
    Local(AppState),
    Remote { base: String, password: String },
}

impl Auth {
    async fn tokens(&self, world: &World) -> anyhow::Result<Tokens> {
        match self {
            Auth::Local(app) => seed::mint(app, world),
            Auth::Remote { base, password } => crate::remote::tokens(base, world, password).await,
        }
    }
}

fn needs_tickets(config: &Config) -> bool {
    [Scenario::Reference, Scenario::Update, Scenario::Read, Scenario::Mixed, Scenario::Login]
        .iter()
        .any(|s| config.runs(*s))
}

fn pool_size(config: &Config) -> usize {
    if config.tiny {
        16
    } else {
        1024
    }
}

/// Runs the benchmark described by `config`.
///
/// # Errors
/// When the server cannot be started or reached, or seeding fails.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    let mut report = Report::new(config.clone());
    report.notes.push(format!("reference event payload: {} bytes of JSON", reference::payload_bytes()));
    match config.target.clone() {
        Some(base) => remote(&config, &mut report, &base).await?,
        None => {
            progress!("starting the server ({:?} store)", config.store);
            let mut server = InProcess::start(&config).await?;
            let outcome = local(&config, &mut report, &mut server).await;
            if config.keep_db {
                report.notes.push(format!("kept {}", server.describe()));
            }
            server.cleanup(config.keep_db).await;
            outcome?;
        }
    }
    let rank = |name: &str| Scenario::ALL.iter().position(|s| s.name() == name).unwrap_or(usize::MAX);
    report.rows.sort_by_key(|row| rank(&row.scenario));
    let postgres = config.target.as_ref().map_or(config.store == StoreKind::Postgres, |_| {
        config.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"))
    });
    if !postgres {
        report.rows.iter_mut().for_each(|row| row.pg_cpu_ms = None);
    }
    report.fill_ratios();
    Ok(report)
}

async fn store_version(db: &Db) -> Option<String> {
    match db {
        Db::Postgres(pool) => sqlx::query_scalar("SELECT version()").fetch_one(pool).await.ok(),
        Db::Sqlite(pool) => sqlx::query_scalar("SELECT 'SQLite ' || sqlite_version()").fetch_one(pool).await.ok(),
    }
}

/// Gives the planner statistics for the seeded tables, as autovacuum would
/// in production soon after a bulk load; without them PostgreSQL plans the
/// ticket lists as bitmap scans plus sorts of every matching row.
async fn analyze(db: &Db, report: &mut Report) -> anyhow::Result<()> {
    if let Db::Postgres(pool) = db {
        let autovacuum: String = sqlx::query_scalar("SHOW autovacuum").fetch_one(pool).await?;
        if autovacuum != "on" {
            report.notes.push(format!("autovacuum is {autovacuum} on this PostgreSQL server"));
        }
    }
    on_db!(db, pool => sqlx::query("ANALYZE").execute(pool).await.map(|_| ()))?;
    report.notes.push("ANALYZE ran after seeding, before measuring".to_owned());
    Ok(())
}

async fn local(config: &Config, report: &mut Report, server: &mut InProcess) -> anyhow::Result<()> {
    let app = server.app.clone();
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let par = config.seed_parallelism;
    report.store_version = store_version(app.read.db()).await;

    progress!("seeding accounts");
    let started = Instant::now();
    let users = seed::users(app.clone(), run_id, config.employees, config.login_accounts, par);
    let (admin, employees, logins) = server.on_server(users).await??;
    let how = "admin via App::ensure_admin, others via the Account aggregate sharing one argon2id hash";
    report.seeded("accounts", 1 + employees.len() + logins.len(), started.elapsed(), how);

    let count = if needs_tickets(config) { config.tickets } else { 0 };
    progress!("seeding {count} tickets");
    let started = Instant::now();
    let tickets = server.on_server(seed::tickets(app.clone(), employees.clone(), count, par)).await??;
    server.on_server(seed::caught_up(app.clone())).await??;
    let how = format!("write side in process, {par} parallel tasks, until projected");
    report.seeded("tickets", tickets.len(), started.elapsed(), &how);

    let mut long = None;
    if config.runs(Scenario::Update) || config.runs(Scenario::Read) {
        progress!("seeding a ticket with {} events", config.long_history);
        let started = Instant::now();
        let seeding = seed::long_history(app.clone(), admin.id, employees[0].id, config.long_history);
        let (id, steps) = server.on_server(seeding).await??;
        server.on_server(seed::caught_up(app.clone())).await??;
        report.seeded("events on one ticket", config.long_history, started.elapsed(), "write side, one at a time");
        long = Some((id, AtomicU32::new(steps)));
    }
    analyze(app.read.db(), report).await?;
    let updatable = seed::updatable(&tickets, pool_size(config));
    let world = World { admin, employees, logins, tickets, updatable, long };

    let world = Arc::new(world);

    progress!("starting the server in a process of its own");
    server.stop().await?;
    let served = Served::start(&server.settings).await?;
    report.startup_ms = Some(served.startup.as_secs_f64() * 1000.0);
    report.memory.extend(served.child.memory("server ready on the seeded store"));
    crate::cpu::watch_server(Some(served.child.pid));
    let reference_url = server.settings.database_url.clone();
    let gql = Gql::new(&served.base, None)?;
    let auth = Auth::Local(app.clone());
    let outcome = http_scenarios(config, report, &gql, &served.base, &world, &auth, Some(&reference_url)).await;
    report.memory.extend(served.child.memory("server after the HTTP scenarios"));
    crate::cpu::watch_server(None);
    let stopped = served.child.stop().await;
    outcome?;
    stopped?;

    if config.runs(Scenario::Rebuild) {
        rebuild(config, report, server, &world).await?;
    }
    Ok(())
}

/// Tops the store up to `--events`, scans them (the reference), then
/// rebuilds the read models in a process of its own and starts a server on
/// the result: the server's start-up with every event stored.
async fn rebuild(config: &Config, report: &mut Report, server: &InProcess, world: &World) -> anyhow::Result<()> {
    let settings = &server.settings;
    let reporters = world.employees.iter().map(|e| e.id).collect();
    let done =
        crate::events::prepare(settings, world.admin.id, reporters, config.events, config.seed_parallelism).await?;
    if done.added > 0 {
        let how = "domain events sealed under real data keys, multi-row INSERTs into events";
        report.seeded("events for the rebuild", done.added, done.seeding, how);
    }
    if done.settled {
        report.notes.push("CHECKPOINT ran before the event scan and the rebuild".to_owned());
    }
    let scan = Row::throughput("reference", REF_SCAN, 1, done.scanned, done.scan, Compare::Nothing);
    report.rows.push(scan.with_cpu(Some(done.scan_cpu)));

    progress!("rebuilding the read models from {} events in a process of its own", done.scanned);
    let mut child = Child::spawn(Role::Rebuild, settings)?;
    let rebuilt = async {
        child.reached("assembled", Duration::from_secs(120)).await?;
        crate::cpu::watch_server(Some(child.pid));
        let before = crate::cpu::sample();
        let line = child.reached("rebuilt", Duration::from_secs(3600)).await?;
        let usage = before.usage();
        let (applied, seconds) = line.split_once(' ').context("the rebuild's report")?;
        anyhow::Ok((applied.parse::<u64>()?, Duration::from_secs_f64(seconds.parse()?), usage))
    }
    .await;
    report.memory.extend(child.memory("rebuild process at its end"));
    crate::cpu::watch_server(None);
    let stopped = child.stop().await;
    let (applied, took, usage) = rebuilt?;
    stopped?;
    let case = "projector rebuild from zero (events)";
    let row = Row::throughput("rebuild", case, 1, applied, took, Compare::Scan);
    report.rows.push(row.with_cpu(Some(usage)));

    progress!("starting the server on {} events", done.scanned);
    let served = Served::start(settings).await?;
    report.memory.extend(served.child.memory("server ready on the rebuilt store"));
    served.child.stop().await?;
    report.notes.push(format!(
        "start-up with {} events stored and projected: {:.0} ms from starting the server process until /readyz \
         answered 200 (projector lag {})",
        done.scanned,
        served.startup.as_secs_f64() * 1000.0,
        served.lag
    ));
    Ok(())
}

async fn remote(config: &Config, report: &mut Report, base: &str) -> anyhow::Result<()> {
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let gql = Gql::new(base, None)?;
    let database = config.database_url.as_deref().and_then(|url| url.split('?').next()?.rsplit('/').next());
    if let Some(name) = database.filter(|name| !name.is_empty() && !name.contains(':')) {
        crate::cpu::watch_database(name);
    }
    report.memory.extend(config.server_pid.and_then(|pid| memory(Some(pid), "server at start")));
    if let Some(pid) = config.server_pid {
        crate::cpu::watch_server(Some(pid));
    }
    progress!("signing in and registering accounts over GraphQL");
    let started = Instant::now();
    let (admin, employees, logins) = crate::remote::users(base, &run_id, config).await?;
    report.seeded("accounts", 1 + employees.len() + logins.len(), started.elapsed(), "GraphQL register");
    let mut world = World { admin, employees, logins, tickets: vec![], updatable: vec![], long: None };
    let auth = Auth::Remote { base: base.to_owned(), password: config.admin_password.clone() };
    let tokens = auth.tokens(&world).await?;
    let count = if needs_tickets(config) { config.tickets } else { 0 };
    progress!("creating {count} tickets over GraphQL");
    let started = Instant::now();
    world.tickets = crate::remote::tickets(&gql, &tokens, count, config.seed_parallelism).await?;
    crate::remote::caught_up(base).await?;
    report.seeded("tickets", world.tickets.len(), started.elapsed(), "GraphQL createTicket");
    if config.runs(Scenario::Update) || config.runs(Scenario::Read) {
        let started = Instant::now();
        let (id, steps) = crate::remote::long_history(&gql, &tokens, config.long_history).await?;
        crate::remote::caught_up(base).await?;
        report.seeded("events on one ticket", config.long_history, started.elapsed(), "GraphQL updateTicket");
        world.long = Some((id, AtomicU32::new(steps)));
    }
    world.updatable = seed::updatable(&world.tickets, pool_size(config));
    if let Some(url) = config.database_url.as_deref() {
        // As in process: fresh rows have no statistics until ANALYZE (or autovacuum) runs.
        let db = Db::connect(url).await?;
        analyze(&db, report).await?;
        db.close().await;
    }
    let world = Arc::new(world);
    let url = config.database_url.as_deref();
    http_scenarios(config, report, &gql, base, &world, &auth, url).await?;
    report.memory.extend(config.server_pid.and_then(|pid| memory(Some(pid), "server at the end")));
    if config.runs(Scenario::Rebuild) {
        report.notes.push("rebuild skipped: it needs a server the benchmark starts (run without --target)".to_owned());
    }
    Ok(())
}

async fn http_scenarios(
    config: &Config,
    report: &mut Report,
    gql: &Gql,
    base: &str,
    world: &Arc<World>,
    auth: &Auth,
    reference_url: Option<&str>,
) -> anyhow::Result<()> {
    let shared = Arc::new(config.clone());
    let reporters: Arc<Vec<Uuid>> = Arc::new(world.employees.iter().map(|e: &Account| e.id).collect());
    for (i, &clients) in config.clients.iter().enumerate() {
        let tokens = Arc::new(auth.tokens(world).await.context("signing in")?);
        let ctx = Ctx { config: shared.clone(), gql: gql.clone(), base: base.to_owned(), world: world.clone(), tokens };
        if config.runs(Scenario::Reference) {
            match reference::open_for(reference_url, clients).await? {
                Some(pool) => {
                    progress!("reference SQL at {clients} clients");
                    let writes = reference::writes(&pool, config, clients).await;
                    let pages = reference::pages(&pool, config, clients, reporters.clone()).await;
                    pool.close().await;
                    report.rows.push(Row::measured("reference", REF_WRITE, &writes, None, Compare::Nothing));
                    report.rows.push(Row::measured("reference", REF_PAGE, &pages, None, Compare::Nothing));
                }
                None => report.notes.push("reference skipped: give --database-url with --target".to_owned()),
            }
        }
        if config.runs(Scenario::Create) {
            progress!("create at {clients} clients");
            report.rows.extend(scenarios::create(&ctx, clients).await);
        }
        if config.runs(Scenario::Update) {
            progress!("update at {clients} clients");
            let (rows, note) = scenarios::update(&ctx, clients, i == 0).await;
            report.rows.extend(rows);
            report.notes.extend(note);
        }
        if config.runs(Scenario::Read) {
            progress!("read at {clients} clients");
            report.rows.extend(scenarios::read(&ctx, clients).await);
        }
        if config.runs(Scenario::Mixed) {
            progress!("mixed at {clients} clients");
            report.rows.extend(scenarios::mixed(&ctx, clients).await);
        }
        if config.runs(Scenario::Login) {
            progress!("login at {clients} clients");
            let (rows, note) = scenarios::login(&ctx, clients).await?;
            report.rows.extend(rows);
            report.notes.push(note);
        }
    }
    Ok(())
}
