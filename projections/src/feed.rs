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

/// A ticket whose change the read models now show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketChanged {
    pub id: Uuid,
    /// Its version after the change (the newest, when several changes were
    /// projected together).
    pub version: i64,
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
    /// Follows `db`'s checkpoint until `stop` turns true; `progress` is this
    /// process's projector's.
    pub fn follow(db: Db, progress: watch::Receiver<Checkpoint>, stop: watch::Receiver<bool>) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        tokio::spawn(follow(db, sender.clone(), progress, stop));
        Self(sender)
    }

    /// Every change from now on; `Lagged` when the listener fell more than
    /// [`BACKLOG`] behind, `Closed` once the server stops.
    pub fn subscribe(&self) -> broadcast::Receiver<TicketChanged> {
        self.0.subscribe()
    }
}

async fn follow(
    db: Db,
    changes: broadcast::Sender<TicketChanged>,
    mut progress: watch::Receiver<Checkpoint>,
    mut stop: watch::Receiver<bool>,
) {
    // Where listening starts: a subscriber that comes before the first
    // look (up to a second later) must not miss what happens meanwhile.
    let mut seen = stored_checkpoint(&db).await.ok();
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
        // Asked again after waiting: a listener that came meanwhile must be
        // told of what woke the feed.
        if changes.receiver_count() == 0 {
            // Nobody to tell: the starting point moves with this process's
            // projector for free, and with another's once a second.
            seen = match projected {
                Some(now) => Some(now),
                None => stored_checkpoint(&db).await.ok().or(seen),
            };
            continue;
        }
        if projected.is_some() {
            // Batches in quick succession (hundreds a second under load)
            // are told together.
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
        let now = match stored_checkpoint(&db).await {
            Ok(now) => now,
            Err(error) => {
                tracing::warn!(error = %error, "change feed cannot read the checkpoint");
                continue;
            }
        };
        // A checkpoint that went back is a rebuild from zero: nothing to
        // report for it, since no ticket is newer than it was.
        let from = match seen {
            Some(from) if from < now => from,
            _ => {
                seen = Some(now);
                continue;
            }
        };
        match changed_between(&db, from, now).await {
            Ok(changed) => {
                for change in changed {
                    // No listener left is not an error.
                    let _ = changes.send(change);
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "change feed cannot read the events");
                continue;
            }
        }
        seen = Some(now);
    }
}

/// Tickets with events after `from` up to `to`, each with its newest version.
async fn changed_between(db: &Db, from: Checkpoint, to: Checkpoint) -> Result<Vec<TicketChanged>, sqlx::Error> {
    let rows: Vec<(String, i64)> = match db {
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
    Ok(rows
        .into_iter()
        .filter_map(|(id, version)| Some(TicketChanged { id: Uuid::parse_str(&id).ok()?, version }))
        .collect())
}
