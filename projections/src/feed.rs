//! Which tickets changed, once the read models show it: what GraphQL
//! subscriptions are told. Each server process follows the stored
//! checkpoint (its own projector's progress wakes it at once, another
//! replica's is polled for) and, when it has moved, reads which ticket
//! streams the events between the two checkpoints belong to. Everything it
//! reports can already be read back from the read models.

use std::time::Duration;

use commands::db::Db;
use cqrs_es::Aggregate;
use domain::ticket::Ticket;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::projector::{stored_checkpoint, Checkpoint};
use crate::read::ReadModels;

/// A ticket whose change the read models now show, with what decides who
/// may be told of it (read once for every listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketChanged {
    pub id: Uuid,
    /// Its version after the change (the newest, when several changes were
    /// projected together).
    pub version: i64,
    pub reporter: Uuid,
    pub deleted: bool,
}

/// Changes held for a listener that has not taken them yet; one that falls
/// further behind is told it missed some.
const BACKLOG: usize = 4096;
/// How often the stored checkpoint is looked at while anyone listens (the
/// projector of this process wakes the feed sooner).
const POLL: Duration = Duration::from_millis(100);
/// And while nobody listens, only to keep the starting point recent.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long a wake-up waits for more batches to tell with it.
const GATHER: Duration = Duration::from_millis(20);

const CHANGED_POSTGRES: &str = "
SELECT aggregate_id, MAX(sequence) FROM events
 WHERE (transaction_id, position) > ($1::text::xid8, $2)
   AND (transaction_id, position) <= ($3::text::xid8, $4)
   AND aggregate_type = $5
 GROUP BY aggregate_id";
const CHANGED_SQLITE: &str = "
SELECT aggregate_id, MAX(sequence) FROM events
 WHERE position > $2 AND position <= $4 AND aggregate_type = $5 AND $1 = $1 AND $3 = $3
 GROUP BY aggregate_id";

/// The changes of one process, for as many listeners as subscribe.
#[derive(Debug, Clone)]
pub struct Changes(broadcast::Sender<TicketChanged>);

impl Changes {
    /// Follows the checkpoint of `read`'s store until `stop` turns true;
    /// `progress` is this process's projector's.
    pub fn follow(read: ReadModels, progress: watch::Receiver<Checkpoint>, stop: watch::Receiver<bool>) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        tokio::spawn(follow(read, sender.clone(), progress, stop));
        Self(sender)
    }

    /// Every change from now on; `Lagged` when the listener fell more than
    /// [`BACKLOG`] behind, `Closed` once the server stops.
    pub fn subscribe(&self) -> broadcast::Receiver<TicketChanged> {
        self.0.subscribe()
    }
}

async fn follow(
    read: ReadModels,
    changes: broadcast::Sender<TicketChanged>,
    mut progress: watch::Receiver<Checkpoint>,
    mut stop: watch::Receiver<bool>,
) {
    // Where listening starts: a subscriber that comes before the first
    // look (up to a second later) must not miss what happens meanwhile.
    let db = read.db().clone();
    let mut seen = look(&db).await;
    let mut projector_alive = true;
    loop {
        let listening = changes.receiver_count() > 0;
        let pause = if listening { POLL } else { IDLE_POLL };
        let projected = tokio::select! {
            changed = progress.changed(), if projector_alive => {
                projector_alive = changed.is_ok();
                projector_alive.then(|| *progress.borrow_and_update())
            }
            () = tokio::time::sleep(pause) => None,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        // Where the projector is, read before asking who listens: a listener
        // that came meanwhile is told of whatever moved after this.
        let now = match projected {
            Some(now) => Some(now),
            None => look(&db).await,
        };
        if changes.receiver_count() == 0 {
            // Nobody to tell: the starting point moves with this process's
            // projector at once, and with another's once a second.
            seen = now.or(seen);
            continue;
        }
        let now = if projected.is_some() {
            // Batches in quick succession (hundreds a second under load)
            // are told together.
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            look(&db).await
        } else {
            now
        };
        let Some(now) = now else { continue };
        // A checkpoint that went back is a rebuild from zero: nothing to
        // report for it, since no ticket is newer than it was.
        let from = match seen {
            Some(from) if from < now => from,
            _ => {
                seen = Some(now);
                continue;
            }
        };
        match changed_between(&read, from, now).await {
            Ok(changed) => {
                for change in changed {
                    // No listener left is not an error.
                    let _ = changes.send(change);
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "change feed cannot read the changes");
                continue;
            }
        }
        seen = Some(now);
    }
}

/// The stored checkpoint, or `None` (logged) when the store fails.
async fn look(db: &Db) -> Option<Checkpoint> {
    stored_checkpoint(db)
        .await
        .map_err(|error| tracing::warn!(error = %error, "change feed cannot read the checkpoint"))
        .ok()
}

/// Tickets with events after `from` up to `to`, each with its newest
/// version and its row's reporter and deletion.
async fn changed_between(
    read: &ReadModels,
    from: Checkpoint,
    to: Checkpoint,
) -> Result<Vec<TicketChanged>, sqlx::Error> {
    let rows: Vec<(String, i64)> = match read.db() {
        Db::Postgres(pool) => {
            sqlx::query_as(CHANGED_POSTGRES)
                .bind(from.transaction_id.to_string())
                .bind(from.position)
                .bind(to.transaction_id.to_string())
                .bind(to.position)
                .bind(Ticket::TYPE)
                .fetch_all(pool)
                .await?
        }
        Db::Sqlite(pool) => {
            sqlx::query_as(CHANGED_SQLITE)
                .bind(from.transaction_id)
                .bind(from.position)
                .bind(to.transaction_id)
                .bind(to.position)
                .bind(Ticket::TYPE)
                .fetch_all(pool)
                .await?
        }
    };
    let mut changed = Vec::with_capacity(rows.len());
    for (id, version) in rows {
        let Ok(id) = Uuid::parse_str(&id) else { continue };
        // Projected up to `to`, so the row is there.
        if let Some(row) = read.ticket(id).await? {
            changed.push(TicketChanged { id, version, reporter: row.reporter_id, deleted: row.deleted_at.is_some() });
        }
    }
    Ok(changed)
}
