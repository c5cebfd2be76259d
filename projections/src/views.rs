//! From events to read-model writes: pure functions, one per aggregate.

use chrono::{DateTime, Utc};
use domain::account::AccountEvent;
use domain::sealed::{SealedField, SealedText};
use domain::ticket::TicketEvent;
use domain::values::Priority;
use serde_json::Value;
use uuid::Uuid;

use crate::read::TicketRow;
use crate::writes::{AttachmentRow, HistoryEntry, TicketChange, UserChange, Write};

/// Shown in place of text whose data key has been destroyed.
pub const ERASED: &str = "[erased]";

/// Who did it and when, from the event's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
}

/// The metadata keys `Meta` reads; any others are skipped unread.
#[derive(Default, serde::Deserialize)]
struct StoredMeta {
    at: Option<String>,
    actor_id: Option<String>,
    actor_role: Option<String>,
}

impl Meta {
    /// Reads the metadata the write side records (JSON text); a missing or
    /// unreadable time falls back to `recorded`, the store's own commit
    /// stamp, and an unreadable actor to none.
    pub fn from_text(metadata: &str, recorded: DateTime<Utc>) -> Self {
        // Values of other types than text count as missing, as before.
        let stored = serde_json::from_str::<StoredMeta>(metadata).unwrap_or_else(|_| {
            let value: Value = serde_json::from_str(metadata).unwrap_or_default();
            let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
            StoredMeta { at: text("at"), actor_id: text("actor_id"), actor_role: text("actor_role") }
        });
        Meta {
            at: stored
                .at
                .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                .map_or(recorded, |at| at.with_timezone(&Utc)),
            actor_id: stored.actor_id.and_then(|id| Uuid::parse_str(&id).ok()),
            actor_role: stored.actor_role,
        }
    }
}

pub fn priority_rank(priority: Priority) -> i16 {
    match priority {
        Priority::Low => 1,
        Priority::Medium => 2,
        Priority::High => 3,
    }
}

/// The writes one ticket event causes. `open` reveals sealed text, or
/// `None` once the ticket's key is shredded.
pub fn ticket_writes(
    ticket: Uuid,
    sequence: i64,
    event: &TicketEvent,
    meta: &Meta,
    open: &dyn Fn(SealedField, &SealedText) -> Option<String>,
) -> Vec<Write> {
    let entry = |action: &'static str, field: Option<&'static str>, from: Option<String>, to: Option<String>| {
        Write::InsertHistory(HistoryEntry {
            ticket_id: ticket,
            sequence,
            at: meta.at,
            actor_id: meta.actor_id,
            actor_role: meta.actor_role.clone(),
            action,
            field,
            from,
            to,
        })
    };
    let update = |change: TicketChange| Write::UpdateTicket { id: ticket, change, at: meta.at, version: sequence };
    let text = |field, sealed| open(field, sealed).unwrap_or_else(|| ERASED.to_owned());
    match event {
        TicketEvent::TicketOpened { reporter, title, description, status, priority, .. } => vec![
            Write::InsertTicket {
                id: ticket,
                title: text(SealedField::Title, title),
                description: text(SealedField::Description, description),
                priority: priority.as_str(),
                priority_rank: priority_rank(*priority),
                status: status.as_str(),
                reporter: reporter.as_uuid(),
                at: meta.at,
                version: sequence,
            },
            entry("TicketOpened", None, None, Some(status.as_str().to_owned())),
        ],
        TicketEvent::TicketStatusChanged { from, to } => vec![
            update(TicketChange::Status(to.as_str())),
            entry("TicketStatusChanged", Some("status"), Some(from.to_string()), Some(to.to_string())),
        ],
        TicketEvent::TicketPriorityChanged { from, to } => vec![
            update(TicketChange::Priority(to.as_str(), priority_rank(*to))),
            entry("TicketPriorityChanged", Some("priority"), Some(from.to_string()), Some(to.to_string())),
        ],
        TicketEvent::TicketAssigned { assignee, previous } => vec![
            update(TicketChange::Assignee(Some(assignee.as_uuid()))),
            entry("TicketAssigned", Some("assignee"), previous.map(|p| p.to_string()), Some(assignee.to_string())),
        ],
        TicketEvent::TicketUnassigned { previous } => vec![
            update(TicketChange::Assignee(None)),
            entry("TicketUnassigned", Some("assignee"), Some(previous.to_string()), None),
        ],
        // The envelope stays sealed in the read model; the history says only
        // that the notes changed, never what they say.
        TicketEvent::ConfidentialNotesSet { envelope } => vec![
            update(TicketChange::Notes(envelope.ciphertext.clone())),
            entry("ConfidentialNotesSet", Some(crate::read::NOTES_FIELD), None, None),
        ],
        TicketEvent::AttachmentAdded { id, filename, content_type, size, sha256 } => {
            let filename = text(SealedField::AttachmentName, filename);
            vec![
                Write::InsertAttachment(AttachmentRow {
                    row: crate::read::AttachmentRow {
                        id: id.as_uuid(),
                        ticket_id: ticket,
                        filename: filename.clone(),
                        content_type: content_type.clone(),
                        size: i64::try_from(*size).unwrap_or(i64::MAX),
                        sha256: sha256.clone(),
                        uploaded_by: meta.actor_id,
                        uploaded_at: meta.at,
                    },
                    sequence,
                }),
                update(TicketChange::Touched),
                entry(
                    "AttachmentAdded",
                    Some("attachments"),
                    None,
                    Some(format!("{filename} ({content_type}, {size} bytes, sha256 {sha256})")),
                ),
            ]
        }
        TicketEvent::TicketDeleted { .. } => {
            vec![update(TicketChange::Deleted), entry("TicketDeleted", None, None, None)]
        }
    }
}

/// `row` as the projector leaves it once it has applied `events`, the last
/// events of the stream up to sequence `version`, all recorded `at`: the
/// projector's own changes, applied in memory, so a mutation can answer
/// with exactly the row it will find.
pub fn ticket_row_after(mut row: TicketRow, events: &[TicketEvent], version: i64, at: DateTime<Utc>) -> TicketRow {
    let meta = Meta { at, actor_id: None, actor_role: None };
    let first = version - i64::try_from(events.len()).unwrap_or(i64::MAX) + 1;
    for (sequence, event) in (first..).zip(events) {
        for write in ticket_writes(row.id, sequence, event, &meta, &|_, _| None) {
            if let Write::UpdateTicket { change, at, version, .. } = write {
                row.absorb(change, at, version);
            }
        }
    }
    row
}

/// The writes one account event causes.
pub fn account_writes(user: Uuid, sequence: i64, event: &AccountEvent, meta: &Meta) -> Vec<Write> {
    let update = |change| Write::UpdateUser { id: user, change, version: sequence };
    match event {
        AccountEvent::AccountRegistered { email, display_name, password_hash, role, .. } => vec![Write::InsertUser {
            id: user,
            email: email.as_str().to_owned(),
            display_name: display_name.clone(),
            role: role.as_str(),
            password_hash: password_hash.clone(),
            at: meta.at,
        }],
        AccountEvent::AccountRoleChanged { to, .. } => vec![update(UserChange::Role(to.as_str()))],
        AccountEvent::AccountPasswordChanged { password_hash } => {
            vec![update(UserChange::PasswordHash(password_hash.clone()))]
        }
        AccountEvent::AccountDisabled => vec![update(UserChange::Disabled(meta.at))],
        AccountEvent::AccountEnabled => vec![update(UserChange::Enabled)],
    }
}

#[cfg(test)]
mod tests {
    use domain::values::{Status, UserId};

    use super::*;

    fn meta() -> Meta {
        Meta { at: DateTime::UNIX_EPOCH, actor_id: Some(Uuid::from_u128(5)), actor_role: Some("ADMIN".into()) }
    }

    #[test]
    fn a_row_after_events_is_what_the_projector_writes() {
        let at = DateTime::UNIX_EPOCH + chrono::Duration::seconds(60);
        let row = TicketRow {
            id: Uuid::from_u128(1),
            title: "t".into(),
            description: "d".into(),
            priority: "MEDIUM".into(),
            priority_rank: 2,
            status: "OPEN".into(),
            reporter_id: Uuid::from_u128(2),
            assignee_id: None,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            version: 3,
            notes_envelope: None,
            deleted_at: None,
        };
        let assignee = UserId::from_uuid(Uuid::from_u128(9));
        let events = [
            TicketEvent::TicketStatusChanged { from: Status::Open, to: Status::InProgress },
            TicketEvent::TicketPriorityChanged { from: Priority::Medium, to: Priority::High },
            TicketEvent::TicketAssigned { assignee, previous: None },
        ];
        let after = ticket_row_after(row.clone(), &events, 6, at);
        let expected = TicketRow {
            status: "IN_PROGRESS".into(),
            priority: "HIGH".into(),
            priority_rank: 3,
            assignee_id: Some(assignee.as_uuid()),
            updated_at: at,
            version: 6,
            ..row.clone()
        };
        assert_eq!(after, expected);
        // No events: the row as it was.
        assert_eq!(ticket_row_after(row.clone(), &[], 3, at), row);
    }

    #[test]
    fn notes_never_reach_history_as_text() {
        let event = TicketEvent::ConfidentialNotesSet {
            envelope: SealedText { ciphertext: "sealed".into(), digest: "d".into() },
        };
        let writes = ticket_writes(Uuid::nil(), 3, &event, &meta(), &|_, _| Some("the secret".into()));
        for write in &writes {
            assert!(!format!("{write:?}").contains("the secret"));
        }
        assert!(
            matches!(&writes[1], Write::InsertHistory(h) if h.field == Some("confidentialNotes") && h.to.is_none())
        );
    }

    #[test]
    fn shredded_text_reads_as_erased() {
        let sealed = SealedText { ciphertext: "x".into(), digest: "d".into() };
        let event = TicketEvent::TicketOpened {
            id: domain::values::TicketId::from_uuid(Uuid::nil()),
            reporter: UserId::from_uuid(Uuid::from_u128(7)),
            title: sealed.clone(),
            description: sealed,
            status: Status::Open,
            priority: Priority::Medium,
        };
        let writes = ticket_writes(Uuid::nil(), 1, &event, &meta(), &|_, _| None);
        assert!(matches!(&writes[0], Write::InsertTicket { title, .. } if title == ERASED));
    }

    #[test]
    fn status_changes_record_from_and_to() {
        let event = TicketEvent::TicketStatusChanged { from: Status::Open, to: Status::Resolved };
        let writes = ticket_writes(Uuid::nil(), 2, &event, &meta(), &|_, _| None);
        assert!(matches!(&writes[1], Write::InsertHistory(h)
            if h.from.as_deref() == Some("OPEN") && h.to.as_deref() == Some("RESOLVED") && h.sequence == 2));
    }

    #[test]
    fn metadata_is_read_with_fallbacks() {
        let json = r#"{"at": "2026-01-02T03:04:05.000006Z", "actor_id": "not-a-uuid", "request_id": "r"}"#;
        let meta = Meta::from_text(json, DateTime::UNIX_EPOCH);
        assert_eq!(meta.at.to_rfc3339(), "2026-01-02T03:04:05.000006+00:00");
        assert_eq!(meta.actor_id, None);
        let odd = Meta::from_text(r#"{"at": 5, "actor_role": "ADMIN"}"#, DateTime::UNIX_EPOCH);
        assert_eq!((odd.at, odd.actor_role.as_deref()), (DateTime::UNIX_EPOCH, Some("ADMIN")));
        assert_eq!(Meta::from_text("not json", DateTime::UNIX_EPOCH).at, DateTime::UNIX_EPOCH);
    }
}
