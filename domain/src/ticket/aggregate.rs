//! The Ticket aggregate decides; its state is only what decisions need.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::commands::{AssigneeChange, NewAttachment, TicketCommand, TicketUpdate};
use super::events::TicketEvent;
use crate::sealed::SealedText;
use crate::values::{Priority, Status, TicketId, UserId};

/// Why a ticket refused a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TicketError {
    #[error("ticket not found")]
    NotFound,
    #[error("ticket already exists")]
    AlreadyExists,
    #[error("ticket is deleted")]
    Deleted,
    #[error("ticket is at version {actual}, not {expected}")]
    VersionConflict { expected: u64, actual: u64 },
    #[error("status cannot move from {from} to {to}")]
    InvalidTransition { from: Status, to: Status },
}

/// A ticket as far as decisions need it; read models hold the rest.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    id: Option<TicketId>,
    /// The number of events applied: the aggregate's sequence.
    version: u64,
    status: Option<Status>,
    priority: Option<Priority>,
    assignee: Option<UserId>,
    notes_digest: Option<String>,
    attachments: u32,
    deleted: bool,
}

impl Ticket {
    pub fn version(&self) -> u64 {
        self.version
    }

    fn live(&self) -> Result<(Status, Priority), TicketError> {
        match (self.id, self.status, self.priority) {
            _ if self.deleted => Err(TicketError::Deleted),
            (Some(_), Some(status), Some(priority)) => Ok((status, priority)),
            _ => Err(TicketError::NotFound),
        }
    }

    fn check_version(&self, expected: Option<u64>) -> Result<(), TicketError> {
        match expected {
            Some(expected) if expected != self.version => {
                Err(TicketError::VersionConflict { expected, actual: self.version })
            }
            _ => Ok(()),
        }
    }

    fn decide_update(&self, update: TicketUpdate) -> Result<Vec<TicketEvent>, TicketError> {
        let (status, priority) = self.live()?;
        self.check_version(update.expected_version)?;
        let mut events = Vec::new();
        if let Some(to) = update.status.filter(|to| *to != status) {
            if !status.can_move_to(to) {
                return Err(TicketError::InvalidTransition { from: status, to });
            }
            events.push(TicketEvent::TicketStatusChanged { from: status, to });
        }
        if let Some(to) = update.priority.filter(|to| *to != priority) {
            events.push(TicketEvent::TicketPriorityChanged { from: priority, to });
        }
        match (update.assignee, self.assignee) {
            (Some(AssigneeChange::Assign(assignee)), previous) if previous != Some(assignee) => {
                events.push(TicketEvent::TicketAssigned { assignee, previous });
            }
            (Some(AssigneeChange::Clear), Some(previous)) => {
                events.push(TicketEvent::TicketUnassigned { previous });
            }
            _ => {}
        }
        if let Some(envelope) = update.confidential_notes {
            if self.notes_digest.as_deref() != Some(envelope.digest.as_str()) {
                events.push(TicketEvent::ConfidentialNotesSet { envelope });
            }
        }
        Ok(events)
    }

    fn decide(&self, command: TicketCommand) -> Result<Vec<TicketEvent>, TicketError> {
        match command {
            TicketCommand::Open { id, reporter, title, description, attachments } => {
                if self.id.is_some() {
                    return Err(TicketError::AlreadyExists);
                }
                let opened = TicketEvent::TicketOpened {
                    id,
                    reporter,
                    title,
                    description,
                    status: Status::Open,
                    priority: Priority::Medium,
                };
                Ok(std::iter::once(opened).chain(attachments.into_iter().map(attachment_added)).collect())
            }
            TicketCommand::Update(update) => self.decide_update(update),
            TicketCommand::AddAttachment(attachment) => {
                self.live()?;
                Ok(vec![attachment_added(attachment)])
            }
            TicketCommand::Delete { reason, expected_version } => {
                self.live()?;
                self.check_version(expected_version)?;
                Ok(vec![TicketEvent::TicketDeleted { reason }])
            }
        }
    }
}

fn attachment_added(NewAttachment { id, filename, content_type, size, sha256 }: NewAttachment) -> TicketEvent {
    TicketEvent::AttachmentAdded { id, filename, content_type, size, sha256 }
}

impl Aggregate for Ticket {
    /// Stored with every event: never rename it.
    const TYPE: &'static str = "Ticket";
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        match event {
            TicketEvent::TicketOpened { id, status, priority, .. } => {
                self.id = Some(id);
                self.status = Some(status);
                self.priority = Some(priority);
            }
            TicketEvent::TicketStatusChanged { to, .. } => self.status = Some(to),
            TicketEvent::TicketPriorityChanged { to, .. } => self.priority = Some(to),
            TicketEvent::TicketAssigned { assignee, .. } => self.assignee = Some(assignee),
            TicketEvent::TicketUnassigned { .. } => self.assignee = None,
            TicketEvent::ConfidentialNotesSet { envelope: SealedText { digest, .. } } => {
                self.notes_digest = Some(digest);
            }
            TicketEvent::AttachmentAdded { .. } => self.attachments += 1,
            TicketEvent::TicketDeleted { .. } => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;
    use crate::values::AttachmentId;

    type Given = TestFramework<Ticket>;

    fn sealed(text: &str) -> SealedText {
        SealedText { ciphertext: format!("ct:{text}"), digest: format!("d:{text}") }
    }

    fn ticket_id() -> TicketId {
        TicketId::from_uuid(Uuid::from_u128(1))
    }

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    fn opened() -> TicketEvent {
        TicketEvent::TicketOpened {
            id: ticket_id(),
            reporter: user(7),
            title: sealed("printer"),
            description: sealed("on fire"),
            status: Status::Open,
            priority: Priority::Medium,
        }
    }

    fn status(to: Status) -> TicketCommand {
        TicketCommand::Update(TicketUpdate { status: Some(to), ..Default::default() })
    }

    fn moved(from: Status, to: Status) -> TicketEvent {
        TicketEvent::TicketStatusChanged { from, to }
    }

    #[test]
    fn opening_starts_open_at_medium() {
        Given::with(())
            .given_no_previous_events()
            .when(TicketCommand::Open {
                id: ticket_id(),
                reporter: user(7),
                title: sealed("printer"),
                description: sealed("on fire"),
                attachments: vec![],
            })
            .then_expect_events(vec![opened()]);
    }

    #[test]
    fn opening_twice_is_refused() {
        Given::with(())
            .given(vec![opened()])
            .when(TicketCommand::Open {
                id: ticket_id(),
                reporter: user(7),
                title: sealed("x"),
                description: sealed("y"),
                attachments: vec![],
            })
            .then_expect_error(TicketError::AlreadyExists);
    }

    #[test]
    fn commands_on_a_missing_ticket_are_not_found() {
        Given::with(())
            .given_no_previous_events()
            .when(status(Status::Resolved))
            .then_expect_error(TicketError::NotFound);
    }

    #[test]
    fn allowed_status_moves_emit_one_event() {
        use Status::*;
        let path = [(Open, InProgress), (InProgress, Open), (Open, Resolved), (Resolved, Open)];
        for (from, to) in path {
            let mut given = vec![opened()];
            match from {
                Open => {}
                other => given.push(moved(Open, other)),
            }
            Given::with(()).given(given).when(status(to)).then_expect_events(vec![moved(from, to)]);
        }
        Given::with(())
            .given(vec![opened(), moved(Open, InProgress)])
            .when(status(Resolved))
            .then_expect_events(vec![moved(InProgress, Resolved)]);
    }

    #[test]
    fn resolved_cannot_go_straight_to_in_progress() {
        Given::with(())
            .given(vec![opened(), moved(Status::Open, Status::Resolved)])
            .when(status(Status::InProgress))
            .then_expect_error(TicketError::InvalidTransition { from: Status::Resolved, to: Status::InProgress });
    }

    #[test]
    fn setting_the_same_values_emits_nothing() {
        Given::with(())
            .given(vec![
                opened(),
                TicketEvent::TicketAssigned { assignee: user(9), previous: None },
                TicketEvent::ConfidentialNotesSet { envelope: sealed("secret") },
            ])
            .when(TicketCommand::Update(TicketUpdate {
                status: Some(Status::Open),
                priority: Some(Priority::Medium),
                assignee: Some(AssigneeChange::Assign(user(9))),
                confidential_notes: Some(SealedText { ciphertext: "other nonce".into(), digest: "d:secret".into() }),
                expected_version: None,
            }))
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![opened()])
            .when(TicketCommand::Update(TicketUpdate { assignee: Some(AssigneeChange::Clear), ..Default::default() }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn one_update_can_change_every_field_in_order() {
        Given::with(())
            .given(vec![opened(), TicketEvent::TicketAssigned { assignee: user(9), previous: None }])
            .when(TicketCommand::Update(TicketUpdate {
                status: Some(Status::InProgress),
                priority: Some(Priority::High),
                assignee: Some(AssigneeChange::Assign(user(10))),
                confidential_notes: Some(sealed("new")),
                expected_version: Some(2),
            }))
            .then_expect_events(vec![
                moved(Status::Open, Status::InProgress),
                TicketEvent::TicketPriorityChanged { from: Priority::Medium, to: Priority::High },
                TicketEvent::TicketAssigned { assignee: user(10), previous: Some(user(9)) },
                TicketEvent::ConfidentialNotesSet { envelope: sealed("new") },
            ]);
    }

    #[test]
    fn clearing_the_assignee_records_who_it_was() {
        Given::with(())
            .given(vec![opened(), TicketEvent::TicketAssigned { assignee: user(9), previous: None }])
            .when(TicketCommand::Update(TicketUpdate { assignee: Some(AssigneeChange::Clear), ..Default::default() }))
            .then_expect_events(vec![TicketEvent::TicketUnassigned { previous: user(9) }]);
    }

    #[test]
    fn a_stale_expected_version_is_a_conflict_even_for_a_no_op() {
        Given::with(())
            .given(vec![opened(), moved(Status::Open, Status::InProgress)])
            .when(TicketCommand::Update(TicketUpdate {
                status: Some(Status::InProgress),
                expected_version: Some(1),
                ..Default::default()
            }))
            .then_expect_error(TicketError::VersionConflict { expected: 1, actual: 2 });
        Given::with(())
            .given(vec![opened()])
            .when(TicketCommand::Delete { reason: None, expected_version: Some(3) })
            .then_expect_error(TicketError::VersionConflict { expected: 3, actual: 1 });
    }

    #[test]
    fn a_deleted_ticket_accepts_nothing() {
        let deleted = vec![opened(), TicketEvent::TicketDeleted { reason: None }];
        Given::with(()).given(deleted.clone()).when(status(Status::Resolved)).then_expect_error(TicketError::Deleted);
        Given::with(())
            .given(deleted.clone())
            .when(TicketCommand::Delete { reason: None, expected_version: None })
            .then_expect_error(TicketError::Deleted);
        Given::with(())
            .given(deleted)
            .when(TicketCommand::AddAttachment(evidence(3)))
            .then_expect_error(TicketError::Deleted);
    }

    #[test]
    fn deleting_records_the_reason() {
        Given::with(())
            .given(vec![opened()])
            .when(TicketCommand::Delete { reason: Some(sealed("dup")), expected_version: Some(1) })
            .then_expect_events(vec![TicketEvent::TicketDeleted { reason: Some(sealed("dup")) }]);
    }

    fn evidence(n: u128) -> NewAttachment {
        NewAttachment {
            id: AttachmentId::from_uuid(Uuid::from_u128(n)),
            filename: sealed("a.png"),
            content_type: "image/png".into(),
            size: 3,
            sha256: "00".into(),
        }
    }

    #[test]
    fn attachments_are_recorded() {
        Given::with(())
            .given(vec![opened()])
            .when(TicketCommand::AddAttachment(evidence(3)))
            .then_expect_events(vec![attachment_added(evidence(3))]);
    }

    #[test]
    fn opening_with_evidence_appends_it_in_the_same_command() {
        Given::with(())
            .given_no_previous_events()
            .when(TicketCommand::Open {
                id: ticket_id(),
                reporter: user(7),
                title: sealed("printer"),
                description: sealed("on fire"),
                attachments: vec![evidence(3), evidence(4)],
            })
            .then_expect_events(vec![opened(), attachment_added(evidence(3)), attachment_added(evidence(4))]);
    }

    #[test]
    fn version_counts_every_event() {
        let mut ticket = Ticket::default();
        ticket.apply(opened());
        ticket.apply(moved(Status::Open, Status::Resolved));
        assert_eq!(ticket.version(), 2);
    }
}
