//! What happened to a ticket. Names and payloads are a public contract:
//! analysts consume them, so change a payload only with a new version and
//! an upcaster.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::sealed::SealedText;
use crate::values::{AttachmentId, Priority, Status, TicketId, UserId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TicketEvent {
    TicketOpened {
        id: TicketId,
        reporter: UserId,
        title: SealedText,
        description: SealedText,
        status: Status,
        priority: Priority,
    },
    TicketStatusChanged {
        from: Status,
        to: Status,
    },
    TicketPriorityChanged {
        from: Priority,
        to: Priority,
    },
    TicketAssigned {
        assignee: UserId,
        previous: Option<UserId>,
    },
    TicketUnassigned {
        previous: UserId,
    },
    ConfidentialNotesSet {
        envelope: SealedText,
    },
    AttachmentAdded {
        id: AttachmentId,
        filename: SealedText,
        content_type: String,
        size: u64,
        sha256: String,
    },
    TicketDeleted {
        reason: Option<SealedText>,
    },
}

impl DomainEvent for TicketEvent {
    fn event_type(&self) -> String {
        let name = match self {
            TicketEvent::TicketOpened { .. } => "TicketOpened",
            TicketEvent::TicketStatusChanged { .. } => "TicketStatusChanged",
            TicketEvent::TicketPriorityChanged { .. } => "TicketPriorityChanged",
            TicketEvent::TicketAssigned { .. } => "TicketAssigned",
            TicketEvent::TicketUnassigned { .. } => "TicketUnassigned",
            TicketEvent::ConfidentialNotesSet { .. } => "ConfidentialNotesSet",
            TicketEvent::AttachmentAdded { .. } => "AttachmentAdded",
            TicketEvent::TicketDeleted { .. } => "TicketDeleted",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
