//! What may be asked of a ticket. Free text arrives already sealed.

use crate::sealed::SealedText;
use crate::values::{AttachmentId, Priority, Status, TicketId, UserId};

/// A request to a ticket; the aggregate decides which events follow.
#[derive(Debug, Clone)]
pub enum TicketCommand {
    /// Report a new incident, with the evidence that came with it: one
    /// append, so the ticket never exists without its attachments.
    Open { id: TicketId, reporter: UserId, title: SealedText, description: SealedText, attachments: Vec<NewAttachment> },
    /// Change any of the workflow fields at once, under one version check.
    Update(TicketUpdate),
    /// Record an attachment whose blob is already stored.
    AddAttachment(NewAttachment),
    /// Delete the ticket; nothing is accepted afterwards.
    Delete { reason: Option<SealedText>, expected_version: Option<u64> },
}

/// The admin's edit of a ticket; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TicketUpdate {
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub assignee: Option<AssigneeChange>,
    pub confidential_notes: Option<SealedText>,
    /// When set, the command is refused unless the ticket is at this version.
    pub expected_version: Option<u64>,
}

/// How the assignee should change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssigneeChange {
    Assign(UserId),
    Clear,
}

/// An attachment whose bytes are already stored under `sha256`.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub id: AttachmentId,
    pub filename: SealedText,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}
