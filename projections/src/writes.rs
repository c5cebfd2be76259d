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

impl crate::read::TicketRow {
    /// Applies one change as the projector does, stamping `at` and `version`.
    pub(crate) fn absorb(&mut self, change: TicketChange, at: DateTime<Utc>, version: i64) {
        match change {
            TicketChange::Status(status) => status.clone_into(&mut self.status),
            TicketChange::Priority(priority, rank) => {
                priority.clone_into(&mut self.priority);
                self.priority_rank = rank;
            }
            TicketChange::Assignee(assignee) => self.assignee_id = assignee,
            TicketChange::Notes(envelope) => self.notes_envelope = Some(envelope),
            TicketChange::Deleted => self.deleted_at = Some(at),
            TicketChange::Touched => {}
        }
        self.updated_at = at;
        self.version = version;
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserChange {
    Role(&'static str),
    PasswordHash(String),
    /// Disabled at this time (tokens issued before it stay refused).
    Disabled(DateTime<Utc>),
    /// Enabled again; the time of the latest disabling is kept.
    Enabled,
}

/// One attachment of a ticket, its name opened for display, and the
/// sequence of the event that added it (its order on the ticket).
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentRow {
    pub row: crate::read::AttachmentRow,
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

/// Applies one change to a user who existed before the batch.
macro_rules! update_user {
    ($conn:expr, $id:expr, $change:expr, $version:expr) => {{
        use $crate::writes::UserChange;
        let query = match $change {
            UserChange::Role(role) => sqlx::query("UPDATE users SET role = $3, version = $2 WHERE id = $1")
                .bind($id)
                .bind($version)
                .bind(*role),
            UserChange::PasswordHash(hash) => {
                sqlx::query("UPDATE users SET password_hash = $3, version = $2 WHERE id = $1")
                    .bind($id)
                    .bind($version)
                    .bind(hash)
            }
            UserChange::Disabled(at) => {
                sqlx::query("UPDATE users SET disabled = true, disabled_at = $3, version = $2 WHERE id = $1")
                    .bind($id)
                    .bind($version)
                    .bind(*at)
            }
            UserChange::Enabled => {
                sqlx::query("UPDATE users SET disabled = false, version = $2 WHERE id = $1").bind($id).bind($version)
            }
        };
        query.execute(&mut *$conn).await?;
    }};
}
pub(crate) use update_user;
