//! The real write and read sides over one test database, and the checks
//! every projection test makes: the read models agree with the event store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commands::cipher::DataKey;
use commands::db::Db;
use commands::keys::KeyRing;
use commands::on_db;
use commands::write::{Actor, WriteSide};
use domain::account::AccountCommand;
use domain::sealed::{SealedField, SealedText};
use domain::ticket::{NewAttachment, TicketCommand, TicketUpdate};
use domain::values::{AttachmentId, DisplayName, Email, Role, TicketId, UserId};
use projections::projector::{Checkpoint, Projector};
use projections::read::{ReadModels, TicketOrder, TicketQuery};
use uuid::Uuid;

/// How long a test waits for the projector to reach the newest event.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Everything a test drives, wired as the server wires it.
pub struct App {
    pub db: Db,
    pub write: Arc<WriteSide>,
    pub keys: KeyRing,
    pub projector: Projector,
    pub read: ReadModels,
}

impl App {
    pub fn new(db: Db) -> Self {
        let write = Arc::new(WriteSide::new(db.clone()));
        let keys = KeyRing::new(db.clone(), test_support::master_keys());
        let projector = Projector::new(db.clone(), keys.clone(), write.appended());
        let read = ReadModels::new(write.statements().clone(), projector.progress());
        Self { db, write, keys, projector, read }
    }

    /// Another projector on the same database and keys, as after a restart.
    pub fn another_projector(&self) -> Projector {
        Projector::new(self.db.clone(), self.keys.clone(), self.write.appended())
    }

    /// Registers an account and returns its id.
    pub async fn register(&self, email: &str, role: Role) -> UserId {
        let email = Email::parse(email).expect("valid email");
        let id = UserId::for_email(&email);
        let command = AccountCommand::Register {
            email,
            display_name: DisplayName::parse("Test User").expect("valid name"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$test$test".to_owned(),
            role,
        };
        self.write.account(id, command, &Actor::system("test-register")).await.expect("registered");
        id
    }

    /// Opens a ticket through the write side, its text sealed under a new data key.
    pub async fn open_ticket(&self, reporter: UserId, title: &str) -> TicketId {
        open_ticket(&self.write, &self.keys, reporter, title).await
    }

    /// Applies one update as an admin and returns the ticket's version.
    pub async fn update(&self, id: TicketId, update: TicketUpdate) -> u64 {
        self.write.ticket(id, TicketCommand::Update(update), &admin()).await.expect("update accepted")
    }

    /// Projects until every event committed so far is applied; returns how
    /// many events that took.
    pub async fn settle(&self) -> usize {
        self.settle_with(&self.projector).await
    }

    /// [`App::settle`] with another projector. `catch_up` alone may stop
    /// early on PostgreSQL: it reads only below the oldest transaction still
    /// running in the whole cluster, and parallel tests keep some running.
    pub async fn settle_with(&self, projector: &Projector) -> usize {
        let deadline = Instant::now() + SETTLE_LIMIT;
        let newest = self.newest_event().await;
        let mut applied = projector.catch_up().await.expect("projector caught up");
        while self.checkpoint().await < newest {
            assert!(Instant::now() < deadline, "the projector did not reach {newest:?} within {SETTLE_LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
            applied += projector.catch_up().await.expect("projector caught up");
        }
        applied
    }

    /// Waits until a projector running elsewhere (`Projector::run`) has
    /// applied every event committed so far.
    pub async fn wait_until_projected(&self) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        let newest = self.newest_event().await;
        while self.checkpoint().await < newest {
            assert!(Instant::now() < deadline, "the projector did not reach {newest:?} within {SETTLE_LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last event in projection order, `None` for an empty store.
    pub async fn newest_event(&self) -> Option<Checkpoint> {
        let row: Option<(i64, i64)> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT transaction_id::text::bigint, position FROM events \
                 ORDER BY transaction_id DESC, position DESC LIMIT 1",
                )
                .fetch_optional(pool)
                .await
            }
            Db::Sqlite(pool) => {
                sqlx::query_as("SELECT 0, position FROM events ORDER BY position DESC LIMIT 1")
                    .fetch_optional(pool)
                    .await
            }
        }
        .expect("newest event read");
        row.map(|(transaction_id, position)| Checkpoint { transaction_id, position })
    }

    /// The projector's stored checkpoint; `None` before the first batch.
    pub async fn checkpoint(&self) -> Option<Checkpoint> {
        let row: Option<(i64, i64)> = match &self.db {
            Db::Postgres(pool) => sqlx::query_as(
                "SELECT transaction_id::text::bigint, position FROM projector_checkpoints WHERE name = 'read_models'",
            )
            .fetch_optional(pool)
            .await,
            Db::Sqlite(pool) => {
                sqlx::query_as("SELECT transaction_id, position FROM projector_checkpoints WHERE name = 'read_models'")
                    .fetch_optional(pool)
                    .await
            }
        }
        .expect("checkpoint read");
        row.map(|(transaction_id, position)| Checkpoint { transaction_id, position })
    }

    /// Every read model as comparable rows.
    pub async fn snapshot(&self) -> Snapshot {
        let tickets = self
            .read
            .tickets(&TicketQuery {
                include_deleted: true,
                order: Some(TicketOrder::CreatedAsc),
                limit: 100_000,
                ..TicketQuery::default()
            })
            .await
            .expect("tickets read");
        let (mut history, mut attachments) = (Vec::new(), Vec::new());
        for ticket in &tickets {
            let rows = self.read.history(ticket.id).await.expect("history read");
            history.extend(rows.iter().map(|row| format!("{} {row:?}", ticket.id)));
            let rows = self.read.attachments(ticket.id).await.expect("attachments read");
            attachments.extend(rows.iter().map(|row| format!("{row:?}")));
        }
        let users = self.read.users(None, 100_000).await.expect("users read");
        Snapshot {
            tickets: tickets.iter().map(|row| format!("{row:?}")).collect(),
            history,
            attachments,
            users: users.iter().map(|row| format!("{row:?}")).collect(),
        }
    }

    /// Checks that every stream is projected exactly once: each ticket's
    /// version and history, and each user's version, match its events.
    /// Returns the number of events checked.
    pub async fn assert_read_models_match_events(&self) -> i64 {
        let mut total = 0;
        for (id, events) in event_counts(&self.db, "Ticket").await {
            let ticket =
                self.read.ticket(id).await.expect("ticket read").unwrap_or_else(|| panic!("ticket {id} missing"));
            assert_eq!(ticket.version, events, "ticket {id}: read-model version vs events");
            let sequences: Vec<i64> =
                self.read.history(id).await.expect("history read").iter().map(|row| row.sequence).collect();
            assert_eq!(sequences, (1..=events).collect::<Vec<_>>(), "ticket {id}: history vs events");
            total += events;
        }
        for (id, events) in event_counts(&self.db, "Account").await {
            let user = self.read.user(id).await.expect("user read").unwrap_or_else(|| panic!("user {id} missing"));
            assert_eq!(user.version, events, "user {id}: read-model version vs events");
            total += events;
        }
        assert_eq!(total, event_total(&self.db).await, "every event belongs to a checked stream");
        total
    }
}

/// All read models, row by row, in a stable order.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub tickets: Vec<String>,
    pub history: Vec<String>,
    pub attachments: Vec<String>,
    pub users: Vec<String>,
}

/// Opens a ticket without an `App`, for spawned writers.
pub async fn open_ticket(write: &WriteSide, keys: &KeyRing, reporter: UserId, title: &str) -> TicketId {
    open_ticket_with_evidence(write, keys, reporter, title, &[]).await
}

/// Opens a ticket that arrives with attachments named `files`.
pub async fn open_ticket_with_evidence(
    write: &WriteSide,
    keys: &KeyRing,
    reporter: UserId,
    title: &str,
    files: &[&str],
) -> TicketId {
    let id = TicketId::from_uuid(Uuid::new_v4());
    let key = keys.create(id).await.expect("data key stored");
    let command = TicketCommand::Open {
        id,
        reporter,
        title: key.seal(id.as_uuid(), SealedField::Title, title),
        description: key.seal(id.as_uuid(), SealedField::Description, "It stopped working this morning."),
        attachments: files.iter().map(|file| evidence(&key, id, file)).collect(),
    };
    let actor = Actor { user_id: Some(reporter), role: Some(Role::Employee), request_id: "test-open".into() };
    write.ticket(id, command, &actor).await.expect("ticket opened");
    id
}

/// An attachment of `ticket` named `file`, its bytes notionally stored.
pub fn evidence(key: &DataKey, ticket: TicketId, file: &str) -> NewAttachment {
    NewAttachment {
        id: AttachmentId::from_uuid(Uuid::new_v4()),
        filename: key.seal(ticket.as_uuid(), SealedField::AttachmentName, file),
        content_type: "image/png".into(),
        size: 1234,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
    }
}

/// Seals confidential notes for `id` under its data key.
pub async fn seal_notes(keys: &KeyRing, id: TicketId, text: &str) -> SealedText {
    let key = keys.get(id).await.expect("key read").expect("key exists");
    key.seal(id.as_uuid(), SealedField::ConfidentialNotes, text)
}

pub fn admin() -> Actor {
    Actor {
        user_id: Some(UserId::from_uuid(Uuid::from_u128(0xad))),
        role: Some(Role::Admin),
        request_id: "test".into(),
    }
}

/// Events per stream of `aggregate_type`, straight from the event store.
pub async fn event_counts(db: &Db, aggregate_type: &str) -> Vec<(Uuid, i64)> {
    const SQL: &str = "SELECT aggregate_id, COUNT(*) FROM events WHERE aggregate_type = $1 \
        GROUP BY aggregate_id ORDER BY aggregate_id";
    let rows: Vec<(String, i64)> =
        on_db!(db, pool => sqlx::query_as(SQL).bind(aggregate_type).fetch_all(pool).await).expect("events counted");
    rows.into_iter().map(|(id, count)| (Uuid::parse_str(&id).expect("uuid stream id"), count)).collect()
}

pub async fn event_total(db: &Db) -> i64 {
    on_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(pool).await).expect("events counted")
}
