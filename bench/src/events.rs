//! The rebuild scenario's data and measurements.
//!
//! Seeding a million events through cqrs-es one command at a time would
//! take longer than the rebuild it prepares, so these events are written
//! by direct multi-row INSERTs into the real `events` table. They are
//! valid: built from the domain's own `TicketEvent` values, serialised as
//! cqrs-es serialises them (`serde_json::to_value` of the event and of the
//! metadata map the write side records), with title, description and notes
//! sealed under a real per-ticket data key created through `KeyRing`. Each
//! ticket gets ten events: opened, eight status/priority changes that
//! follow the workflow's rules, and a confidential note.
//!
//! The reference for the rebuild is an ordered scan of the same events in
//! the projector's order, decoded like the projector decodes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::state::AppState;
use chrono::{SubsecRound, Utc};
use commands::db::Db;
use commands::json_text::JsonText;
use commands::on_db;
use cqrs_es::DomainEvent as _;
use domain::sealed::SealedField;
use domain::ticket::TicketEvent;
use domain::values::{Priority, Role, Status, TicketId, UserId};
use futures_util::TryStreamExt;
use projections::projector::EventRow as ProjectorRow;
use serde_json::Value;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::driver::for_each_parallel;
use crate::seed::change;

/// Events per seeded ticket.
const PER_TICKET: usize = 10;
/// Tickets per INSERT statement (so 1,000 rows and 7,000 binds).
const TICKETS_PER_BATCH: usize = 100;

/// One row of the `events` table as postgres-es and sqlite-es write it.
struct EventRow {
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
}

/// The events of one ticket, its data key created and stored first.
async fn ticket_events(
    app: &AppState,
    reporter: Uuid,
    admin: Uuid,
    n: usize,
    events: usize,
) -> anyhow::Result<Vec<EventRow>> {
    let id = TicketId::from_uuid(Uuid::new_v4());
    let key = app.keys.create(id).await?;
    let (title, description) = crate::seed::ticket_text(n);
    let seal = |field, text: &str| key.seal(id.as_uuid(), field, text);
    let mut list = vec![TicketEvent::TicketOpened {
        id,
        reporter: UserId::from_uuid(reporter),
        title: seal(SealedField::Title, &title),
        description: seal(SealedField::Description, &description),
        status: Status::Open,
        priority: Priority::Medium,
    }];
    let (mut status, mut priority) = (Status::Open, Priority::Medium);
    for step in 0..u32::try_from(PER_TICKET - 2)? {
        match change(step) {
            (Some(to), _) => {
                list.push(TicketEvent::TicketStatusChanged { from: status, to });
                status = to;
            }
            (_, Some(to)) => {
                list.push(TicketEvent::TicketPriorityChanged { from: priority, to });
                priority = to;
            }
            (None, None) => {}
        }
    }
    let note = format!("Router admin password rotated after incident {n}.");
    list.push(TicketEvent::ConfidentialNotesSet { envelope: seal(SealedField::ConfidentialNotes, &note) });
    list.truncate(events);
    let at = Utc::now().trunc_subsecs(6);
    let request_id = format!("rebuild-{n}");
    let mut rows = Vec::with_capacity(list.len());
    for (i, event) in list.into_iter().enumerate() {
        let actor = if i == 0 {
            crate::seed::actor(reporter, Role::Employee, &request_id)
        } else {
            crate::seed::actor(admin, Role::Admin, &request_id)
        };
        rows.push(EventRow {
            aggregate_id: id.to_string(),
            sequence: i64::try_from(i + 1)?,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(&event)?,
            metadata: serde_json::to_value(actor.metadata(at))?,
        });
    }
    Ok(rows)
}

async fn insert(db: &Db, rows: &[EventRow]) -> anyhow::Result<()> {
    on_db!(db, pool => {
        let mut sql = QueryBuilder::new(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ",
        );
        sql.push_values(rows, |mut b, row| {
            b.push_bind("Ticket")
                .push_bind(&row.aggregate_id)
                .push_bind(row.sequence)
                .push_bind(&row.event_type)
                .push_bind(&row.event_version)
                .push_bind(JsonText(&row.payload))
                .push_bind(JsonText(&row.metadata));
        });
        sql.build().execute(pool).await?;
    });
    Ok(())
}

/// How many events the store holds.
///
/// # Errors
/// When the store fails.
pub async fn count(db: &Db) -> anyhow::Result<usize> {
    let n: i64 = on_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(pool).await)?;
    Ok(usize::try_from(n)?)
}

/// Adds `events` valid ticket events, reporters taken round-robin.
///
/// # Errors
/// When the key store or an INSERT fails.
pub async fn seed(
    app: AppState,
    admin: Uuid,
    reporters: Vec<Uuid>,
    events: usize,
    parallelism: usize,
) -> anyhow::Result<()> {
    let tickets = events.div_ceil(PER_TICKET);
    let batches = tickets.div_ceil(TICKETS_PER_BATCH);
    let reporters = Arc::new(reporters);
    for_each_parallel(batches, parallelism, move |batch| {
        let (app, reporters) = (app.clone(), reporters.clone());
        async move {
            let first = batch * TICKETS_PER_BATCH;
            let last = (first + TICKETS_PER_BATCH).min(tickets);
            let mut rows = Vec::with_capacity((last - first) * PER_TICKET);
            for n in first..last {
                let wanted = (events - n * PER_TICKET).min(PER_TICKET);
                let reporter = reporters[n % reporters.len()];
                rows.extend(ticket_events(&app, reporter, admin, n, wanted).await?);
            }
            insert(app.write.db(), &rows).await
        }
    })
    .await?;
    Ok(())
}

const SCAN_POSTGRES: &str = "SELECT position, transaction_id::text::bigint AS transaction_id, aggregate_type, \
    aggregate_id, sequence, event_version, payload::text AS payload, metadata::text AS metadata, recorded_at \
    FROM events ORDER BY events.transaction_id, events.position";
const SCAN_SQLITE: &str = "SELECT position, 0 AS transaction_id, aggregate_type, aggregate_id, sequence, \
    event_version, payload, metadata, recorded_at FROM events ORDER BY position";

/// Reads every event in the projector's order, each row decoded by the
/// projector's own decoder (`ProjectorRow`); answers the count and time.
///
/// # Errors
/// When the store fails.
pub async fn scan(db: &Db) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let sql = if db.is_postgres() { SCAN_POSTGRES } else { SCAN_SQLITE };
    let mut seen = 0u64;
    on_db!(db, pool => {
        let mut rows = sqlx::query_as::<_, ProjectorRow>(sql).fetch(pool);
        while rows.try_next().await?.is_some() {
            seen += 1;
        }
    });
    Ok((seen, started.elapsed()))
}

/// The rebuild's data, ready, and its reference measured.
pub struct Prepared {
    pub added: usize,
    pub seeding: Duration,
    /// Whether a PostgreSQL `CHECKPOINT` ran before the scan.
    pub settled: bool,
    pub scanned: u64,
    pub scan: Duration,
    pub scan_cpu: crate::cpu::Usage,
}

/// With the server stopped: assembles the application in this process,
/// tops the store up to `events` events and scans them, then closes it
/// again for the rebuild process.
///
/// # Errors
/// When the store or the seeding fails.
pub async fn prepare(
    settings: &api::config::Settings,
    admin: Uuid,
    reporters: Vec<Uuid>,
    events: usize,
    parallelism: usize,
) -> anyhow::Result<Prepared> {
    let (app, _projector) = api::http::assemble(settings.clone()).await?;
    let have = count(app.write.db()).await?;
    let added = events.saturating_sub(have);
    let started = Instant::now();
    if added > 0 {
        eprintln!("[bench] inserting {added} events ({have} already stored)");
        seed(app.clone(), admin, reporters, added, parallelism).await?;
    }
    let seeding = started.elapsed();
    // What the seeding and the scenarios before wrote would otherwise be
    // flushed by PostgreSQL's checkpointer while the rebuild runs, and the
    // rebuild's first touch of each page would carry a full-page image.
    let settled = match app.write.db() {
        Db::Postgres(pool) => sqlx::query("CHECKPOINT").execute(pool).await.is_ok(),
        Db::Sqlite(_) => false,
    };
    eprintln!("[bench] scanning the events (reference)");
    let before = crate::cpu::sample();
    let (scanned, scan) = scan(app.write.db()).await?;
    let scan_cpu = before.usage();
    app.read.close().await;
    Ok(Prepared { added, seeding, settled, scanned, scan, scan_cpu })
}
