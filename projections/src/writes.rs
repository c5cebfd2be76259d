//! Read-model changes as data: views decide them from events (pure), and
//! one executor per database applies them inside the projector's transaction.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One row-level change to a read model.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    InsertTicket {
        id: Uuid,
        title: String,
        description: String,
        priority: &'static str,
        priority_rank: i16,
        status: &'static str,
        reporter: Uuid,
        at: DateTime<Utc>,
        version: i64,
    },
    /// Sets one column and stamps `updated_at` and `version`.
    UpdateTicket {
        id: Uuid,
        change: TicketChange,
        at: DateTime<Utc>,
        version: i64,
    },
    InsertHistory(HistoryEntry),
    InsertAttachment(AttachmentRow),
    InsertUser {
        id: Uuid,
        email: String,
        display_name: String,
        role: &'static str,
        password_hash: String,
        at: DateTime<Utc>,
    },
    UpdateUser {
        id: Uuid,
        change: UserChange,
        version: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum TicketChange {
    Status(&'static str),
    Priority(&'static str, i16),
    Assignee(Option<Uuid>),
    Notes(String),
    Deleted,
    /// Nothing but the version and time move (e.g. an attachment).
    Touched,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserChange {
    Role(&'static str),
    PasswordHash(String),
    Disabled(bool),
}

/// One attachment of a ticket, its name opened for display.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRow {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: Option<Uuid>,
    pub uploaded_at: DateTime<Utc>,
    pub sequence: i64,
}

/// One line of a ticket's audit history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub ticket_id: Uuid,
    pub sequence: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub action: &'static str,
    pub field: Option<&'static str>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Generates an executor for one database's connection type; the body is
/// the same SQL, compiled with that database's native binds.
macro_rules! executor {
    ($name:ident, $conn:ty) => {
        pub(crate) async fn $name(conn: &mut $conn, writes: &[Write]) -> Result<(), sqlx::Error> {
            for write in writes {
                match write {
                    Write::InsertTicket { id, title, description, priority, priority_rank, status, reporter, at, version } => {
                        sqlx::query(
                            "INSERT INTO tickets (id, title, description, priority, priority_rank, status, \
                             reporter_id, created_at, updated_at, version) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
                        )
                        .bind(id).bind(title).bind(description).bind(*priority).bind(priority_rank)
                        .bind(*status).bind(reporter).bind(at).bind(version)
                        .execute(&mut *conn).await?;
                    }
                    Write::UpdateTicket { id, change, at, version } => {
                        let query = match change {
                            TicketChange::Status(status) => sqlx::query(
                                "UPDATE tickets SET status = $4, updated_at = $2, version = $3 WHERE id = $1",
                            ).bind(id).bind(at).bind(version).bind(*status),
                            TicketChange::Priority(priority, rank) => sqlx::query(
                                "UPDATE tickets SET priority = $4, priority_rank = $5, updated_at = $2, version = $3 WHERE id = $1",
                            ).bind(id).bind(at).bind(version).bind(*priority).bind(rank),
                            TicketChange::Assignee(assignee) => sqlx::query(
                                "UPDATE tickets SET assignee_id = $4, updated_at = $2, version = $3 WHERE id = $1",
                            ).bind(id).bind(at).bind(version).bind(assignee),
                            TicketChange::Notes(envelope) => sqlx::query(
                                "UPDATE tickets SET notes_envelope = $4, updated_at = $2, version = $3 WHERE id = $1",
                            ).bind(id).bind(at).bind(version).bind(envelope),
                            TicketChange::Deleted => sqlx::query(
                                "UPDATE tickets SET deleted_at = $2, updated_at = $2, version = $3 WHERE id = $1",
                            ).bind(id).bind(at).bind(version),
                            TicketChange::Touched => sqlx::query(
                                "UPDATE tickets SET updated_at = $2, version = $3 WHERE id = $1",
                            ).bind(id).bind(at).bind(version),
                        };
                        query.execute(&mut *conn).await?;
                    }
                    Write::InsertHistory(entry) => {
                        sqlx::query(
                            "INSERT INTO ticket_history (ticket_id, sequence, at, actor_id, actor_role, action, \
                             field, from_value, to_value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(entry.ticket_id).bind(entry.sequence).bind(entry.at).bind(entry.actor_id)
                        .bind(&entry.actor_role).bind(entry.action).bind(entry.field).bind(&entry.from)
                        .bind(&entry.to)
                        .execute(&mut *conn).await?;
                    }
                    Write::InsertAttachment(row) => {
                        sqlx::query(
                            "INSERT INTO attachments (id, ticket_id, filename, content_type, size, sha256, \
                             uploaded_by, uploaded_at, sequence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(row.id).bind(row.ticket_id).bind(&row.filename).bind(&row.content_type)
                        .bind(row.size).bind(&row.sha256).bind(row.uploaded_by).bind(row.uploaded_at)
                        .bind(row.sequence)
                        .execute(&mut *conn).await?;
                    }
                    Write::InsertUser { id, email, display_name, role, password_hash, at } => {
                        sqlx::query(
                            "INSERT INTO users (id, email, display_name, role, password_hash, created_at, version) \
                             VALUES ($1, $2, $3, $4, $5, $6, 1)",
                        )
                        .bind(id).bind(email).bind(display_name).bind(*role).bind(password_hash).bind(at)
                        .execute(&mut *conn).await?;
                    }
                    Write::UpdateUser { id, change, version } => {
                        let query = match change {
                            UserChange::Role(role) => sqlx::query(
                                "UPDATE users SET role = $3, version = $2 WHERE id = $1",
                            ).bind(id).bind(version).bind(*role),
                            UserChange::PasswordHash(hash) => sqlx::query(
                                "UPDATE users SET password_hash = $3, version = $2 WHERE id = $1",
                            ).bind(id).bind(version).bind(hash),
                            UserChange::Disabled(disabled) => sqlx::query(
                                "UPDATE users SET disabled = $3, version = $2 WHERE id = $1",
                            ).bind(id).bind(version).bind(disabled),
                        };
                        query.execute(&mut *conn).await?;
                    }
                }
            }
            Ok(())
        }
    };
}

executor!(apply_postgres, sqlx::PgConnection);
executor!(apply_sqlite, sqlx::SqliteConnection);
