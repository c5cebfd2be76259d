//! The projector: reads the event stream in commit order and keeps the read
//! models and the audit history, with its checkpoint in the same
//! transaction as the writes, so a crash never loses or repeats an event.
//!
//! On PostgreSQL a position is drawn at insert but visible at commit, so a
//! reader following positions alone could pass a slow transaction's event
//! for ever. Each event also records its transaction id; the projector
//! reads in `(transaction_id, position)` order and only below the oldest
//! transaction still running, where nothing can appear any more. On SQLite
//! writers are serialised and the position alone is the commit order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use commands::db::Db;
use commands::keys::KeyRing;
use commands::on_db;
use commands::parts::{in_parts, try_in_parts};
use cqrs_es::Aggregate;
use domain::account::{Account, AccountEvent};
use domain::ticket::{Ticket, TicketEvent};
use sqlx::{Connection, PgConnection};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::batch::{apply_postgres, apply_sqlite, Batch};
use crate::by_position::by_position;
use crate::views::{account_writes, ticket_writes, Meta};
use crate::writes::Write;

/// The checkpoint's name; one projector feeds all read models.
const NAME: &str = "read_models";
/// Events per transaction at most; written into the read queries' SQL
/// (`LIMIT 4000`, checked by a test) rather than bound: with a bound limit,
/// PostgreSQL's generic plan, which a connection switches to after five
/// runs, guessed a tenth of the table and could pick a full scan and sort
/// per batch (a rebuild once fell to 3,500 events/s that way).
pub const BATCH_LEN: usize = 4000;
/// How often an idle projector looks for events written by other processes.
const POLL: Duration = Duration::from_millis(50);
/// Advisory lock key electing the one projector per database ("TICKETS\0").
const LEADER_LOCK: i64 = 0x5449_434b_4554_5300;

/// Where the projector has got to: events are applied in this order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint {
    pub transaction_id: i64,
    pub position: i64,
}

by_position! {
    /// An event as `READ_POSTGRES` and `READ_SQLITE` select it (public so
    /// the benchmark's event scan decodes rows exactly as the projector does).
    pub struct EventRow {
        position: i64,
        transaction_id: i64,
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        event_version: String,
        /// JSON text, decoded once straight into the typed event.
        payload: String,
        metadata: String,
        recorded_at: DateTime<Utc>,
    }
}

/// Ordered by the table's columns, not the selected alias of the same name,
/// so the `(transaction_id, position)` index serves it (an alias sort is a
/// full scan and sort per batch).
const READ_POSTGRES: &str = "
SELECT position, transaction_id::text::bigint AS transaction_id, aggregate_type, aggregate_id, sequence,
       event_version, payload::text AS payload, metadata::text AS metadata, recorded_at
  FROM events
 WHERE (transaction_id, position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.transaction_id, events.position
 LIMIT 4000";

const READ_SQLITE: &str = "
SELECT position, 0 AS transaction_id, aggregate_type, aggregate_id, sequence,
       event_version, payload, metadata, recorded_at
  FROM events
 WHERE position > $2 AND $1 = $1
 ORDER BY position
 LIMIT 4000";

const CHECKPOINT_POSTGRES: &str =
    "SELECT transaction_id::text::bigint, position FROM projector_checkpoints WHERE name = $1";
const CHECKPOINT_SQLITE: &str = "SELECT transaction_id, position FROM projector_checkpoints WHERE name = $1";

const SAVE_POSTGRES: &str = "
INSERT INTO projector_checkpoints (name, transaction_id, position) VALUES ($1, $2::text::xid8, $3)
ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, position = excluded.position
 WHERE projector_checkpoints.position = $4";

const SAVE_SQLITE: &str = "
INSERT INTO projector_checkpoints (name, transaction_id, position) VALUES ($1, CAST($2 AS INTEGER), $3)
ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, position = excluded.position
 WHERE projector_checkpoints.position = $4";

/// The checkpoint goes back to zero rather than away: a projector that read
/// the old one (a server left running beside a rebuild) then fails its
/// compare-and-set instead of re-creating the row from where it was. The
/// same transaction marks the rebuild unfinished (see [`MARK_REBUILT`]).
const CLEAR_READ_MODELS: &str =
    "DELETE FROM ticket_history; DELETE FROM attachments; DELETE FROM tickets; DELETE FROM users; \
    INSERT INTO projector_checkpoints (name, transaction_id, position, rebuilding) VALUES ('read_models', 0, 0, 1) \
    ON CONFLICT (name) DO UPDATE SET transaction_id = 0, position = 0, rebuilding = 1;";
/// On PostgreSQL the tables are truncated: deleted rows would stay behind
/// as dead tuples until a vacuum, and every insert of the rebuild would
/// check its unique keys against them (measured: half the rebuild's speed
/// after a 100,000-ticket store was cleared).
const CLEAR_READ_MODELS_POSTGRES: &str = "TRUNCATE ticket_history, attachments, tickets, users; \
    INSERT INTO projector_checkpoints (name, transaction_id, position, rebuilding) \
    VALUES ('read_models', '0', 0, true) \
    ON CONFLICT (name) DO UPDATE SET transaction_id = '0', position = 0, rebuilding = true;";

/// A rebuild is durably unfinished from the transaction that empties the
/// read models until every event that existed then is projected again: a
/// rebuild stopped half way (a crash, Ctrl-C) leaves the mark, and the
/// next projector to lead finishes the work from the checkpoint while the
/// server waits before serving ([`rebuild_unfinished`]); a second
/// `rebuild-projections` starts again from zero. Either way nothing half
/// empty is served as if whole.
const MARK_REBUILT: &str = "UPDATE projector_checkpoints SET rebuilding = false WHERE name = $1";
const REBUILDING: &str = "SELECT rebuilding FROM projector_checkpoints WHERE name = $1";

/// The newest sequence this process's projector has applied per stream, so
/// a waiting mutation learns it is visible without asking the database.
#[derive(Debug, Default)]
pub struct Projected {
    versions: std::sync::Mutex<HashMap<Uuid, i64>>,
    /// Whether this process's projector holds the leadership now.
    leading: std::sync::atomic::AtomicBool,
    /// Counts how often `versions` was emptied: anything judged current
    /// against an older generation must be judged again.
    generation: std::sync::atomic::AtomicU64,
}

/// Marks the projector as leading for as long as it lives.
struct Leading<'a>(&'a Projected);

impl<'a> Leading<'a> {
    /// What an earlier leadership noted may be ahead of the read models (its
    /// last commits need not have reached the disk): start afresh.
    fn start(projected: &'a Projected) -> Self {
        if let Ok(mut versions) = projected.versions.lock() {
            projected.forget_all(&mut versions);
        }
        projected.leading.store(true, std::sync::atomic::Ordering::Release);
        Self(projected)
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.leading.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Projected {
    /// Streams remembered at most; older entries are simply forgotten and
    /// waiters fall back to the database.
    const CAPACITY: usize = 100_000;

    fn forget_all(&self, versions: &mut HashMap<Uuid, i64>) {
        versions.clear();
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn note(&self, rows: &[EventRow]) {
        let Ok(mut versions) = self.versions.lock() else { return };
        if versions.len() > Self::CAPACITY {
            self.forget_all(&mut versions);
        }
        for row in rows {
            if let Ok(id) = Uuid::parse_str(&row.aggregate_id) {
                versions.insert(id, row.sequence);
            }
        }
    }

    /// Whether this process's projector is the one applying events now: then
    /// every event this process appends shows up here once applied.
    pub fn leading(&self) -> bool {
        self.leading.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The newest applied sequence of `id`, if this process applied it.
    pub fn version(&self, id: Uuid) -> Option<i64> {
        self.versions.lock().ok()?.get(&id).copied()
    }

    /// Changes whenever what `version` remembers is forgotten.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A batch read and decoded, ready to be written.
struct Planned {
    rows: Vec<EventRow>,
    batch: Batch,
}

pub struct Projector {
    db: Db,
    keys: KeyRing,
    wake: Arc<Notify>,
    progress: watch::Sender<Checkpoint>,
    projected: Arc<Projected>,
}

impl Projector {
    /// `wake` is notified by the write side after each append.
    pub fn new(db: Db, keys: KeyRing, wake: Arc<Notify>) -> Self {
        let (progress, _) = watch::channel(Checkpoint::default());
        Self { db, keys, wake, progress, projected: Arc::default() }
    }

    /// Per-stream versions applied by this projector.
    pub fn projected(&self) -> Arc<Projected> {
        self.projected.clone()
    }

    /// Changes whenever a batch has been committed to the read models.
    pub fn progress(&self) -> watch::Receiver<Checkpoint> {
        self.progress.subscribe()
    }

    /// Runs until `stop` turns true: waits to be elected, then projects.
    /// Errors are logged and retried; the read models only ever lag.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let result = tokio::select! {
                result = self.lead() => result,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            if let Err(error) = result {
                tracing::error!(error = format!("{error:#}"), "projector failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Projects for as long as it leads. The checkpoint is read once and
    /// then carried from batch to batch (the compare-and-set in each batch
    /// still catches anyone else moving it); after a short batch it waits
    /// for the write side's next append, or polls for other processes'.
    async fn lead(&self) -> anyhow::Result<()> {
        let mut leader = self.elect(None).await?;
        tracing::info!("projector elected");
        let _leading = Leading::start(&self.projected);
        let mut unfinished = self.unfinished_rebuild(leader.as_mut()).await?;
        if unfinished.is_some() {
            tracing::warn!("a rebuild of the read models was interrupted; finishing it");
        }
        let mut from = None;
        loop {
            let start = match from {
                Some(checkpoint) => checkpoint,
                None => self.checkpoint(leader.as_mut()).await?,
            };
            let batch = self.batch_after(leader.as_mut(), start).await?;
            from = batch.map(|(_, to)| to);
            if batch.is_some_and(|(applied, _)| applied == BATCH_LEN) {
                continue;
            }
            if let (Some(target), Some((_, to))) = (unfinished, batch) {
                if self.finish_rebuild(leader.as_mut(), to, target).await? {
                    unfinished = None;
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// On PostgreSQL, a connection holding the leader lock; `None` on SQLite.
    async fn elect(&self, give_up_after: Option<Duration>) -> anyhow::Result<Option<PgConnection>> {
        let Db::Postgres(pool) = &self.db else { return Ok(None) };
        let mut conn = pool.acquire().await?.detach();
        let started = tokio::time::Instant::now();
        loop {
            let won: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut conn).await?;
            if won {
                // The read models and the checkpoint commit together and are
                // derived from durable events: a crash may lose the last
                // batches, which are then simply projected again. So the
                // projector's commits need not wait for the WAL flush.
                // Its statements keep one plan each: left to choose, PostgreSQL
                // planned the batch read and the ticket update afresh for
                // every batch (~0.12 ms each), and the generic plans are the
                // same index scans.
                sqlx::query("SET synchronous_commit = off").execute(&mut conn).await?;
                return Ok(Some(generic_plans(conn).await?));
            }
            if give_up_after.is_some_and(|limit| started.elapsed() > limit) {
                anyhow::bail!("another projector holds the lock; stop the servers first");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Applies everything available now; returns how many events it applied.
    /// For tests and tools; the running projector is elected first.
    ///
    /// # Errors
    /// When the store fails or an event cannot be read.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let mut leader = self.elect(Some(Duration::from_secs(30))).await?;
        let mut total = 0;
        loop {
            let applied = self.catch_up_on(leader.as_mut()).await?;
            if applied == 0 {
                release(leader).await?;
                return Ok(total);
            }
            total += applied;
        }
    }

    /// Applies every event that existed when it started (for rebuilds). An empty batch is
    /// not the end on PostgreSQL: a transaction running anywhere on the
    /// server holds reading back, so it waits (up to a minute) until the
    /// checkpoint has passed them all. Gives the leader lock back at the end.
    async fn drain(&self, mut leader: Option<PgConnection>) -> anyhow::Result<usize> {
        const PATIENCE: Duration = Duration::from_secs(60);
        let target: i64 = match (&self.db, leader.as_mut()) {
            (Db::Postgres(_), Some(conn)) => {
                sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events").fetch_one(conn).await?
            }
            (db, _) => on_db!(db, pool => sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(pool).await)?,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut total = 0;
        let mut from = self.checkpoint(leader.as_mut()).await?;
        let mut planned = next_bulk_batch(&self.db, &self.keys, leader.as_mut(), from).await?;
        // The batches ahead are read on a connection of their own that keeps
        // generic plans, as the leader's does. On pooled connections, where
        // PostgreSQL chooses its plans for itself, every batch's read
        // sometimes took 1–2 s: two 1,000,000-event rebuilds in eight ran
        // at 6,000 events/s.
        let mut reader = match &self.db {
            Db::Postgres(pool) => Some(generic_plans(pool.acquire().await?.detach()).await?),
            Db::Sqlite(_) => None,
        };
        loop {
            let Some(last) = planned.rows.last() else {
                // On a pooled connection: the leader's keeps generic plans,
                // and this count's generic plan was a full scan (0.3 s at
                // the end of a 1,000,000-event rebuild).
                if remaining(&self.db, None, from, Some(target)).await? == 0 {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "a long-running transaction holds the projector back; try again when it ends"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                planned = next_bulk_batch(&self.db, &self.keys, leader.as_mut(), from).await?;
                continue;
            };
            // The next batch is read (on another connection) and decoded on
            // a task of its own while this one is written, so reading,
            // decoding and writing overlap on every core.
            let to = Checkpoint { transaction_id: last.transaction_id, position: last.position };
            let (db, keys) = (self.db.clone(), self.keys.clone());
            let mut on = reader.take();
            let following = tokio::spawn(async move {
                let batch = next_bulk_batch(&db, &keys, on.as_mut(), to).await;
                (on, batch)
            });
            let applied = self.apply(leader.as_mut(), from, planned).await?;
            let (on, following) = following.await.context("planning the next batch")?;
            reader = on;
            if let Some((applied, _)) = applied {
                total += applied;
                from = to;
                planned = following?;
            } else {
                from = self.checkpoint(leader.as_mut()).await?;
                planned = next_bulk_batch(&self.db, &self.keys, leader.as_mut(), from).await?;
            }
        }
        if let Db::Postgres(pool) = &self.db {
            // Fresh tables have no statistics; lists would be planned blind.
            // The two large tables side by side (0.48 s one after the other
            // after 1,000,000 events).
            let analyze = |tables: &'static str| sqlx::query(tables).execute(pool);
            tokio::try_join!(analyze("ANALYZE ticket_history"), analyze("ANALYZE tickets, attachments, users"))?;
        }
        if let Some(reader) = reader {
            reader.close().await?;
        }
        release(leader).await?;
        Ok(total)
    }

    /// Empties the read models and projects every event again from zero.
    ///
    /// # Errors
    /// When a running server holds the projector lock, or the store fails.
    pub async fn rebuild(&self) -> anyhow::Result<usize> {
        let mut leader = self.elect(Some(Duration::from_secs(10))).await?;
        self.empty(leader.as_mut()).await?;
        let events = self.drain(leader).await?;
        on_db!(&self.db, pool => sqlx::query(MARK_REBUILT).bind(NAME).execute(pool).await.map(|_| ()))?;
        Ok(events)
    }

    /// A rebuild's first step alone: empties the read models and marks the
    /// rebuild unfinished, as a rebuild stopped right after it leaves the
    /// store (for tests and tools).
    ///
    /// # Errors
    /// When the store fails or another projector leads.
    pub async fn begin_rebuild(&self) -> anyhow::Result<()> {
        let mut leader = self.elect(Some(Duration::from_secs(10))).await?;
        self.empty(leader.as_mut()).await?;
        Ok(release(leader).await?)
    }

    async fn empty(&self, leader: Option<&mut PgConnection>) -> anyhow::Result<()> {
        match (&self.db, leader) {
            (Db::Postgres(_), Some(conn)) => clear(conn.begin().await?, CLEAR_READ_MODELS_POSTGRES).await,
            (Db::Sqlite(pool), _) => clear(pool.begin().await?, CLEAR_READ_MODELS).await,
            (Db::Postgres(_), None) => unreachable!("elected on PostgreSQL"),
        }
    }

    /// While a rebuild is marked unfinished, the position of the newest
    /// event, which the checkpoint must pass before the mark is lifted.
    async fn unfinished_rebuild(&self, leader: Option<&mut PgConnection>) -> anyhow::Result<Option<i64>> {
        const NEWEST: &str = "SELECT COALESCE(MAX(position), 0) FROM events";
        let Some(conn) = leader else {
            if !rebuild_unfinished(&self.db).await? {
                return Ok(None);
            }
            return Ok(Some(on_db!(&self.db, pool => sqlx::query_scalar(NEWEST).fetch_one(pool).await)?));
        };
        let marked: Option<bool> = sqlx::query_scalar(REBUILDING).bind(NAME).fetch_optional(&mut *conn).await?;
        if marked != Some(true) {
            return Ok(None);
        }
        Ok(Some(sqlx::query_scalar(NEWEST).fetch_one(conn).await?))
    }

    /// Lifts the mark of an unfinished rebuild once every event up to
    /// `target` is projected; `true` when it did.
    async fn finish_rebuild(
        &self,
        mut leader: Option<&mut PgConnection>,
        checkpoint: Checkpoint,
        target: i64,
    ) -> anyhow::Result<bool> {
        if remaining(&self.db, leader.as_deref_mut(), checkpoint, Some(target)).await? > 0 {
            return Ok(false);
        }
        match leader {
            Some(conn) => sqlx::query(MARK_REBUILT).bind(NAME).execute(conn).await.map(|_| ())?,
            None => on_db!(&self.db, pool => sqlx::query(MARK_REBUILT).bind(NAME).execute(pool).await.map(|_| ()))?,
        };
        tracing::info!("the read models' unfinished rebuild is complete");
        Ok(true)
    }

    async fn checkpoint(&self, leader: Option<&mut PgConnection>) -> anyhow::Result<Checkpoint> {
        let Some(conn) = leader else { return Ok(stored_checkpoint(&self.db).await?) };
        let row: Option<(i64, i64)> = sqlx::query_as(CHECKPOINT_POSTGRES).bind(NAME).fetch_optional(conn).await?;
        Ok(row.map(|(transaction_id, position)| Checkpoint { transaction_id, position }).unwrap_or_default())
    }

    /// One batch after the stored checkpoint; returns how many events it applied.
    async fn catch_up_on(&self, mut leader: Option<&mut PgConnection>) -> anyhow::Result<usize> {
        let from = self.checkpoint(leader.as_deref_mut()).await?;
        Ok(self.batch_after(leader, from).await?.map_or(0, |(applied, _)| applied))
    }

    /// One batch: read after `from`, apply, move the checkpoint, commit.
    /// Returns the events applied and the new checkpoint, or `None` when
    /// the stored checkpoint was no longer `from` (nothing applied).
    async fn batch_after(
        &self,
        mut leader: Option<&mut PgConnection>,
        from: Checkpoint,
    ) -> anyhow::Result<Option<(usize, Checkpoint)>> {
        anyhow::ensure!(
            leader.is_some() || !self.db.is_postgres(),
            "projecting on PostgreSQL requires the leader lock"
        );
        let planned = next_batch(&self.db, &self.keys, leader.as_deref_mut(), from).await?;
        self.apply(leader, from, planned).await
    }

    /// Applies a planned batch (read after `from`) and moves the checkpoint
    /// past it in one transaction.
    /// Returns the events applied and the new checkpoint, or `None` when
    /// the stored checkpoint was no longer `from`.
    async fn apply(
        &self,
        leader: Option<&mut PgConnection>,
        from: Checkpoint,
        planned: Planned,
    ) -> anyhow::Result<Option<(usize, Checkpoint)>> {
        let Planned { rows, batch } = planned;
        let Some(last) = rows.last() else { return Ok(Some((0, from))) };
        let to = Checkpoint { transaction_id: last.transaction_id, position: last.position };
        // The checkpoint moves first and only from where this batch started:
        // a second projector (a stray process on the same SQLite file) finds
        // it moved, rolls back and reads again, so nothing is applied twice.
        macro_rules! save_then_apply {
            ($tx:expr, $save:expr, $apply:ident) => {{
                let mut tx = $tx;
                let moved = sqlx::query($save)
                    .bind(NAME)
                    .bind(to.transaction_id.to_string())
                    .bind(to.position)
                    .bind(from.position)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if moved == 1 {
                    $apply(&mut tx, &batch).await?;
                    tx.commit().await?;
                }
                moved
            }};
        }
        let moved = match (&self.db, leader) {
            (Db::Postgres(_), Some(conn)) => save_then_apply!(conn.begin().await?, SAVE_POSTGRES, apply_postgres),
            (Db::Sqlite(pool), _) => save_then_apply!(pool.begin().await?, SAVE_SQLITE, apply_sqlite),
            (Db::Postgres(_), None) => anyhow::bail!("projecting on PostgreSQL requires the leader lock"),
        };
        if moved != 1 {
            tracing::warn!("checkpoint moved under this projector; re-reading");
            return Ok(None);
        }
        self.projected.note(&rows);
        self.progress.send_replace(to);
        Ok(Some((rows.len(), to)))
    }
}

/// `conn`, set to keep one plan per statement whatever values it is given.
async fn generic_plans(mut conn: PgConnection) -> Result<PgConnection, sqlx::Error> {
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await?;
    Ok(conn)
}

/// Up to a batch of events after `from`, in the projector's order, decoded
/// into the writes they cause and folded. Read on PostgreSQL through `conn`
/// (the leader's, or a rebuild's reader), or a pooled one if none is given
/// (reading needs no lock; applying does).
async fn next_batch(
    db: &Db,
    keys: &KeyRing,
    conn: Option<&mut PgConnection>,
    from: Checkpoint,
) -> anyhow::Result<Planned> {
    macro_rules! read {
        ($sql:expr, $transaction_id:expr, $executor:expr) => {
            sqlx::query_as($sql).bind($transaction_id).bind(from.position).fetch_all($executor).await?
        };
    }
    let rows: Vec<EventRow> = match (db, conn) {
        (Db::Postgres(_), Some(conn)) => read!(READ_POSTGRES, from.transaction_id.to_string(), conn),
        (Db::Postgres(pool), None) => read!(READ_POSTGRES, from.transaction_id.to_string(), pool),
        (Db::Sqlite(pool), _) => read!(READ_SQLITE, from.transaction_id, pool),
    };
    let batch = Batch::plan(writes_for(keys, &rows).await?);
    Ok(Planned { rows, batch })
}

/// A rebuild's [`next_batch`]: on PostgreSQL its new rows come encoded for
/// `COPY`, and what is kept of its events is their place and stream (their
/// JSON was decoded into the batch).
async fn next_bulk_batch(
    db: &Db,
    keys: &KeyRing,
    conn: Option<&mut PgConnection>,
    from: Checkpoint,
) -> anyhow::Result<Planned> {
    let mut planned = next_batch(db, keys, conn, from).await?;
    if db.is_postgres() {
        planned.batch.encode_copies()?;
        for row in &mut planned.rows {
            (row.payload, row.metadata) = Default::default();
        }
    }
    Ok(planned)
}

/// An event row decoded.
enum Decoded {
    Ticket(Uuid, TicketEvent),
    Account(Uuid, AccountEvent),
    Unknown,
}

/// Decodes `rows` into the read-model writes they cause. A rebuild's or a
/// catch-up's large batch is decoded and opened in parts side by side.
async fn writes_for(keys: &KeyRing, rows: &[EventRow]) -> anyhow::Result<Vec<Write>> {
    let decoded = try_in_parts(rows, |part| part.iter().map(decode_row).collect::<anyhow::Result<Vec<_>>>())?;
    // Every key the batch needs, in one query.
    let needing_keys: Vec<Uuid> = rows
        .iter()
        .zip(&decoded)
        .filter_map(|(row, decoded)| match decoded {
            Decoded::Ticket(id, event) if row.sequence == 1 || matches!(event, TicketEvent::AttachmentAdded { .. }) => {
                Some(*id)
            }
            _ => None,
        })
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect();
    let keys = keys.get_many(&needing_keys).await?;
    let rows: Vec<(&EventRow, Decoded)> = rows.iter().zip(decoded).collect();
    let parts = in_parts(&rows, |part| {
        let mut writes = Vec::with_capacity(part.len() * 2);
        for (row, decoded) in part {
            let meta = Meta::from_text(&row.metadata, row.recorded_at);
            match decoded {
                Decoded::Ticket(id, event) => {
                    let key = keys.get(id);
                    let open = |field, sealed: &_| key.and_then(|key| key.open(*id, field, sealed).ok());
                    writes.extend(ticket_writes(*id, row.sequence, event, &meta, &open));
                }
                Decoded::Account(id, event) => writes.extend(account_writes(*id, row.sequence, event, &meta)),
                Decoded::Unknown => {
                    tracing::warn!(
                        aggregate_type = row.aggregate_type,
                        position = row.position,
                        "unknown stream skipped"
                    );
                }
            }
        }
        writes
    });
    Ok(parts.concat())
}

fn decode_row(row: &EventRow) -> anyhow::Result<Decoded> {
    let id = || {
        Uuid::parse_str(&row.aggregate_id)
            .with_context(|| format!("event {} has a malformed aggregate id", row.position))
    };
    Ok(match row.aggregate_type.as_str() {
        Ticket::TYPE => Decoded::Ticket(id()?, decode(row)?),
        Account::TYPE => Decoded::Account(id()?, decode(row)?),
        _ => Decoded::Unknown,
    })
}

/// Gives the leader lock back at once rather than when the connection dies.
async fn release(leader: Option<PgConnection>) -> Result<(), sqlx::Error> {
    if let Some(mut conn) = leader {
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(LEADER_LOCK).execute(&mut conn).await?;
        conn.close().await?;
    }
    Ok(())
}

/// Events after `checkpoint` (and at most at `upto`, when given) that the
/// projector has yet to apply, in its own order.
///
/// # Errors
/// When the store fails.
pub async fn remaining(
    db: &Db,
    leader: Option<&mut PgConnection>,
    checkpoint: Checkpoint,
    upto: Option<i64>,
) -> Result<i64, sqlx::Error> {
    const PG: &str = "SELECT COUNT(*) FROM events WHERE (transaction_id, position) > ($1::text::xid8, $2) \
        AND position <= $3";
    const LITE: &str = "SELECT COUNT(*) FROM events WHERE position > $2 AND position <= $3 AND $1 = $1";
    let upto = upto.unwrap_or(i64::MAX);
    match (db, leader) {
        (Db::Postgres(_), Some(conn)) => {
            sqlx::query_scalar(PG)
                .bind(checkpoint.transaction_id.to_string())
                .bind(checkpoint.position)
                .bind(upto)
                .fetch_one(conn)
                .await
        }
        (Db::Postgres(pool), None) => {
            sqlx::query_scalar(PG)
                .bind(checkpoint.transaction_id.to_string())
                .bind(checkpoint.position)
                .bind(upto)
                .fetch_one(pool)
                .await
        }
        (Db::Sqlite(pool), _) => {
            sqlx::query_scalar(LITE)
                .bind(checkpoint.transaction_id)
                .bind(checkpoint.position)
                .bind(upto)
                .fetch_one(pool)
                .await
        }
    }
}

/// Whether a rebuild of the read models was started and not finished.
///
/// # Errors
/// When the store fails.
pub async fn rebuild_unfinished(db: &Db) -> Result<bool, sqlx::Error> {
    let marked: Option<bool> =
        on_db!(db, pool => sqlx::query_scalar(REBUILDING).bind(NAME).fetch_optional(pool).await)?;
    Ok(marked == Some(true))
}

/// Where the projector of `db` has got to.
///
/// # Errors
/// When the store fails.
pub async fn stored_checkpoint(db: &Db) -> Result<Checkpoint, sqlx::Error> {
    let row: Option<(i64, i64)> = match db {
        Db::Postgres(pool) => sqlx::query_as(CHECKPOINT_POSTGRES).bind(NAME).fetch_optional(pool).await?,
        Db::Sqlite(pool) => sqlx::query_as(CHECKPOINT_SQLITE).bind(NAME).fetch_optional(pool).await?,
    };
    Ok(row.map(|(transaction_id, position)| Checkpoint { transaction_id, position }).unwrap_or_default())
}

/// Reads an event's payload; version 1 is the only one so far, and later
/// versions get an upcaster here.
fn decode<E: serde::de::DeserializeOwned>(row: &EventRow) -> anyhow::Result<E> {
    anyhow::ensure!(row.event_version == "1", "event {} has unknown version {}", row.position, row.event_version);
    serde_json::from_str(&row.payload).with_context(|| format!("event {} cannot be read", row.position))
}

async fn clear<DB: sqlx::Database>(mut tx: sqlx::Transaction<'_, DB>, sql: &'static str) -> anyhow::Result<()>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    sqlx::raw_sql(sql).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_queries_limit_is_the_batch() {
        let limit = format!("LIMIT {BATCH_LEN}");
        assert!(READ_POSTGRES.trim_end().ends_with(&limit), "{READ_POSTGRES}");
        assert!(READ_SQLITE.trim_end().ends_with(&limit), "{READ_SQLITE}");
    }
}
