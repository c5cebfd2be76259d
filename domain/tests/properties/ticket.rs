//! The Ticket aggregate against a model of its rules: a ticket opens once,
//! OPEN and MEDIUM; its status moves only along the allowed transitions;
//! a stale `expected_version` is refused; a deleted ticket refuses
//! everything; setting what is already set records nothing.

use domain::sealed::SealedText;
use domain::ticket::{AssigneeChange, NewAttachment, Ticket, TicketCommand, TicketError, TicketEvent, TicketUpdate};
use domain::values::{AttachmentId, Priority, Status, TicketId, UserId};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use uuid::Uuid;

use crate::support::{Stream, CASES};

/// The ticket as its rules describe it, kept from the events it emitted.
#[derive(Debug, Default)]
struct Model {
    opened: bool,
    deleted: bool,
    status: Option<Status>,
    priority: Option<Priority>,
    assignee: Option<UserId>,
    notes_digest: Option<String>,
    version: u64,
}

impl Model {
    fn refusal(&self, command: &TicketCommand) -> Option<TicketError> {
        let expected_version = match command {
            TicketCommand::Open { .. } => return self.opened.then_some(TicketError::AlreadyExists),
            TicketCommand::Update(update) => update.expected_version,
            TicketCommand::AddAttachment(_) => None,
            TicketCommand::Delete { expected_version, .. } => *expected_version,
        };
        if !self.opened {
            return Some(TicketError::NotFound);
        }
        if self.deleted {
            return Some(TicketError::Deleted);
        }
        if let Some(expected) = expected_version.filter(|v| *v != self.version) {
            return Some(TicketError::VersionConflict { expected, actual: self.version });
        }
        let from = self.status?;
        match command {
            TicketCommand::Update(TicketUpdate { status: Some(to), .. }) if *to != from && !from.can_move_to(*to) => {
                Some(TicketError::InvalidTransition { from, to: *to })
            }
            _ => None,
        }
    }

    /// What an accepted command must record: each change that differs from
    /// the state, in the order status, priority, assignee, notes.
    fn expected(&self, command: &TicketCommand) -> Vec<TicketEvent> {
        match command.clone() {
            TicketCommand::Open { id, reporter, title, description, attachments } => {
                let opened = TicketEvent::TicketOpened {
                    id,
                    reporter,
                    title,
                    description,
                    status: Status::Open,
                    priority: Priority::Medium,
                };
                std::iter::once(opened).chain(attachments.into_iter().map(added)).collect()
            }
            TicketCommand::AddAttachment(attachment) => vec![added(attachment)],
            TicketCommand::Delete { reason, .. } => vec![TicketEvent::TicketDeleted { reason }],
            TicketCommand::Update(update) => {
                let (status, priority) = (self.status.expect("open"), self.priority.expect("open"));
                let mut events = Vec::new();
                if let Some(to) = update.status.filter(|to| *to != status) {
                    events.push(TicketEvent::TicketStatusChanged { from: status, to });
                }
                if let Some(to) = update.priority.filter(|to| *to != priority) {
                    events.push(TicketEvent::TicketPriorityChanged { from: priority, to });
                }
                match (update.assignee, self.assignee) {
                    (Some(AssigneeChange::Assign(to)), previous) if previous != Some(to) => {
                        events.push(TicketEvent::TicketAssigned { assignee: to, previous });
                    }
                    (Some(AssigneeChange::Clear), Some(previous)) => {
                        events.push(TicketEvent::TicketUnassigned { previous })
                    }
                    _ => {}
                }
                if let Some(envelope) = update.confidential_notes {
                    if self.notes_digest.as_ref() != Some(&envelope.digest) {
                        events.push(TicketEvent::ConfidentialNotesSet { envelope });
                    }
                }
                events
            }
        }
    }

    /// Follows one event, checking the rules it must keep.
    fn apply(&mut self, event: &TicketEvent) {
        assert!(!self.deleted, "{event:?} after deletion");
        assert!(self.opened || matches!(event, TicketEvent::TicketOpened { .. }), "{event:?} before opening");
        self.version += 1;
        match event {
            TicketEvent::TicketOpened { status, priority, .. } => {
                assert!(self.status.is_none(), "opened twice");
                (self.opened, self.status, self.priority) = (true, Some(*status), Some(*priority));
            }
            TicketEvent::TicketStatusChanged { from, to } => {
                assert_eq!(Some(*from), self.status);
                assert!(from.can_move_to(*to), "{from} -> {to}");
                self.status = Some(*to);
            }
            TicketEvent::TicketPriorityChanged { from, to } => {
                assert_eq!(Some(*from), self.priority);
                assert_ne!(from, to);
                self.priority = Some(*to);
            }
            TicketEvent::TicketAssigned { assignee, previous } => {
                assert_eq!(*previous, self.assignee);
                assert_ne!(Some(*assignee), *previous);
                self.assignee = Some(*assignee);
            }
            TicketEvent::TicketUnassigned { previous } => {
                assert_eq!(Some(*previous), self.assignee);
                self.assignee = None;
            }
            TicketEvent::ConfidentialNotesSet { envelope } => {
                assert_ne!(Some(&envelope.digest), self.notes_digest.as_ref());
                self.notes_digest = Some(envelope.digest.clone());
            }
            TicketEvent::AttachmentAdded { .. } => {}
            TicketEvent::TicketDeleted { .. } => self.deleted = true,
        }
    }
}

fn added(NewAttachment { id, filename, content_type, size, sha256 }: NewAttachment) -> TicketEvent {
    TicketEvent::AttachmentAdded { id, filename, content_type, size, sha256 }
}

fn user() -> impl Strategy<Value = UserId> {
    (1u128..4).prop_map(|n| UserId::from_uuid(Uuid::from_u128(n)))
}

/// A few texts, each sealed more than once: the same text sealed again has
/// a new ciphertext but the same digest.
fn sealed() -> impl Strategy<Value = SealedText> {
    (0u8..3, 0u8..3)
        .prop_map(|(text, nonce)| SealedText { ciphertext: format!("ct{text}/{nonce}"), digest: format!("d{text}") })
}

fn attachment() -> impl Strategy<Value = NewAttachment> {
    (any::<u128>(), sealed(), any::<u64>()).prop_map(|(id, filename, size)| NewAttachment {
        id: AttachmentId::from_uuid(Uuid::from_u128(id)),
        filename,
        content_type: "image/png".into(),
        size,
        sha256: "00".into(),
    })
}

/// Mostly none or near the versions a short stream reaches; now and then
/// any number at all.
fn expected_version() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![2 => Just(None), 3 => (0u64..12).prop_map(Some), 1 => any::<u64>().prop_map(Some)]
}

fn open() -> impl Strategy<Value = TicketCommand> {
    (any::<u128>(), user(), sealed(), sealed(), vec(attachment(), 0..3)).prop_map(
        |(id, reporter, title, description, attachments)| TicketCommand::Open {
            id: TicketId::from_uuid(Uuid::from_u128(id)),
            reporter,
            title,
            description,
            attachments,
        },
    )
}

fn update() -> impl Strategy<Value = TicketUpdate> {
    let status = select(vec![Status::Open, Status::InProgress, Status::Resolved]);
    let priority = select(vec![Priority::Low, Priority::Medium, Priority::High]);
    let assignee = prop_oneof![user().prop_map(AssigneeChange::Assign), Just(AssigneeChange::Clear)];
    (option::of(status), option::of(priority), option::of(assignee), option::of(sealed()), expected_version()).prop_map(
        |(status, priority, assignee, confidential_notes, expected_version)| TicketUpdate {
            status,
            priority,
            assignee,
            confidential_notes,
            expected_version,
        },
    )
}

fn command() -> impl Strategy<Value = TicketCommand> {
    prop_oneof![
        1 => open(),
        8 => update().prop_map(TicketCommand::Update),
        2 => attachment().prop_map(TicketCommand::AddAttachment),
        1 => (option::of(sealed()), expected_version())
            .prop_map(|(reason, expected_version)| TicketCommand::Delete { reason, expected_version }),
    ]
}

/// Most streams start by opening; some never do.
fn commands() -> impl Strategy<Value = Vec<TicketCommand>> {
    (prop::bool::weighted(0.9), open(), vec(command(), 0..40)).prop_map(|(opens, first, mut rest)| {
        if opens {
            rest.insert(0, first);
        }
        rest
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn every_ticket_command_keeps_the_rules(commands in commands()) {
        let mut stream = Stream::<Ticket>::new();
        let mut model = Model::default();
        for command in commands {
            let refusal = model.refusal(&command);
            let expected = refusal.is_none().then(|| model.expected(&command));
            match stream.handle(command) {
                Err(error) => prop_assert_eq!(Some(error), refusal),
                Ok(events) => {
                    prop_assert_eq!(refusal, None);
                    prop_assert_eq!(Some(&events), expected.as_ref());
                    events.iter().for_each(|event| model.apply(event));
                }
            }
            prop_assert_eq!(stream.live.version(), model.version);
            prop_assert_eq!(stream.events.len() as u64, model.version);
        }
    }
}
