//! Tickets: create, read, update and delete, with DESIGN §4's access rules.
//! Another user's ticket looks exactly like one that does not exist.

use async_graphql::UploadValue;
use commands::write::{Actor, Landed};
use domain::sealed::{SealedField, SealedText};
use domain::ticket::TicketEvent;
use domain::ticket::{AssigneeChange, TicketCommand, TicketUpdate};
use domain::values::{Description, Notes, Priority, Reason, Status, TicketId, Title, UserId};
use projections::read::{Table, TicketInFull, TicketParts, TicketQuery, TicketRow};
use uuid::Uuid;

use crate::auth::caller::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::state::App;

/// An admin's edit, as typed; checked in full before anything is written.
#[derive(Debug, Default)]
pub struct TicketEdit {
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub assignee: Option<String>,
    pub clear_assignee: bool,
    pub confidential_notes: Option<String>,
    pub expected_version: Option<i32>,
}

fn expected(version: Option<i32>) -> ApiResult<Option<u64>> {
    version
        .map(|v| u64::try_from(v).map_err(|_| ApiError::BadInput("expectedVersion must not be negative".into())))
        .transpose()
}

impl App {
    /// The ticket if `viewer` may see it: admins see every ticket, deleted
    /// ones included; others see their own live tickets.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` for a malformed id; store failures.
    pub async fn visible_ticket(&self, viewer: Viewer, id: &str) -> ApiResult<Option<TicketRow>> {
        Ok(self.visible_ticket_with(viewer, id, TicketParts::default()).await?.map(|ticket| ticket.row))
    }

    /// As [`App::visible_ticket`], with the parts of it a response asks for.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` for a malformed id; store failures.
    pub async fn visible_ticket_with(
        &self,
        viewer: Viewer,
        id: &str,
        parts: TicketParts,
    ) -> ApiResult<Option<TicketInFull>> {
        let id = TicketId::parse(id)?;
        let ticket = self.read.ticket_with(id.as_uuid(), parts).await?;
        Ok(ticket.filter(|t| viewer.is_admin() || (t.row.reporter_id == viewer.id && t.row.deleted_at.is_none())))
    }

    async fn ticket_for_change(&self, viewer: Viewer, id: &str) -> ApiResult<TicketRow> {
        self.visible_ticket(viewer, id).await?.ok_or(ApiError::NotFound("ticket"))
    }

    /// The ticket once `landed` is projected (so the history and lists a
    /// response goes on to read include it). `known` is the row computed
    /// from what the caller held, when that is exactly what the projector
    /// writes; otherwise the row is read back, and while the projector lags
    /// (or the read fails) `expected` builds it from the older row, so a
    /// mutation that landed never answers with a plain error.
    async fn ticket_after(
        &self,
        id: Uuid,
        landed: &Landed<TicketEvent>,
        known: Option<TicketRow>,
        expected: impl FnOnce(Option<TicketRow>) -> Option<TicketRow>,
    ) -> ApiResult<TicketRow> {
        let visible = self.projected(Table::Tickets, id, landed.version, landed.appended() > 0).await;
        if let Some(row) = known {
            return Ok(row);
        }
        let row = match self.read.ticket(id).await {
            Ok(row) if visible => row,
            Ok(row) => expected(row),
            Err(error) => return Err(ApiError::from(error).after_commit()),
        };
        row.ok_or_else(|| ApiError::CommittedUnconfirmed("ticket missing after write".into()))
    }

    /// # Errors
    /// `BAD_USER_INPUT` for an invalid title or description.
    pub async fn create_ticket(
        &self,
        viewer: Viewer,
        title: &str,
        description: &str,
        uploads: Vec<UploadValue>,
        actor: &Actor,
    ) -> ApiResult<TicketRow> {
        let title = Title::parse(title)?;
        let description = Description::parse(description)?;
        let evidence = self.inspect_uploads(uploads).await?;
        // A retry of a create that was made already answers that ticket.
        let replayed = commands::idempotency::replaying()
            .filter(|recorded| recorded.aggregate_type == "Ticket")
            .and_then(|recorded| Uuid::parse_str(&recorded.aggregate_id).ok());
        let id = TicketId::from_uuid(replayed.unwrap_or_else(Uuid::new_v4));
        let (key, wrapped) = self.keys.mint(id);
        let stored = self.store_evidence_with(id, &key, evidence).await?;
        let command = TicketCommand::Open {
            id,
            reporter: UserId::from_uuid(viewer.id),
            title: key.seal(id.as_uuid(), SealedField::Title, title.as_str()),
            description: key.seal(id.as_uuid(), SealedField::Description, description.as_str()),
            attachments: stored.attachments,
        };
        let landed = self.write.open_ticket(id, wrapped, command, actor).await?;
        tracing::info!(ticket.id = %id, "ticket opened");
        // A new stream has no other writer: the row is known exactly.
        let opened = TicketRow {
            id: id.as_uuid(),
            title: title.as_str().to_owned(),
            description: description.as_str().to_owned(),
            priority: Priority::Medium.as_str().to_owned(),
            priority_rank: projections::views::priority_rank(Priority::Medium),
            status: Status::Open.as_str().to_owned(),
            reporter_id: viewer.id,
            assignee_id: None,
            created_at: landed.at,
            updated_at: landed.at,
            version: i64::try_from(landed.version).unwrap_or(i64::MAX),
            notes_envelope: None,
            deleted_at: None,
        };
        let ticket = self.ticket_after(id.as_uuid(), &landed, Some(opened), |_| None).await?;
        self.confirm_evidence(stored.files).await.map_err(ApiError::after_commit)?;
        Ok(ticket)
    }

    /// # Errors
    /// `FORBIDDEN` for non-admins, `NOT_FOUND`, `BAD_USER_INPUT`, `CONFLICT`.
    pub async fn update_ticket(
        &self,
        viewer: Viewer,
        id: &str,
        edit: TicketEdit,
        actor: &Actor,
    ) -> ApiResult<TicketRow> {
        if !viewer.is_admin() {
            return Err(ApiError::Forbidden);
        }
        let ticket = self.ticket_for_change(viewer, id).await?;
        let ticket_id = TicketId::from_uuid(ticket.id);
        let assignee = match (edit.assignee.as_deref(), edit.clear_assignee) {
            (Some(_), true) => return Err(ApiError::BadInput("give assigneeId or clearAssignee, not both".into())),
            (Some(raw), false) => {
                let user = UserId::parse(raw)?;
                match self.read.user(user.as_uuid()).await? {
                    Some(found) if !found.disabled => Some(AssigneeChange::Assign(user)),
                    _ => return Err(ApiError::BadInput("assignee not found".into())),
                }
            }
            (None, true) => Some(AssigneeChange::Clear),
            (None, false) => None,
        };
        let notes = edit.confidential_notes.as_deref().map(Notes::parse).transpose()?;
        // Clearing notes that were never set changes nothing.
        let notes = notes.filter(|n| !(n.as_str().is_empty() && ticket.notes_envelope.is_none()));
        let expected_version = expected(edit.expected_version)?;
        let confidential_notes = match notes {
            Some(notes) => Some(self.seal(ticket_id, SealedField::ConfidentialNotes, notes.as_str()).await?),
            None => None,
        };
        let update = TicketUpdate {
            status: edit.status,
            priority: edit.priority,
            assignee,
            confidential_notes,
            expected_version,
        };
        let landed = self.write.ticket_landed(ticket_id, TicketCommand::Update(update), actor).await?;
        // Nobody wrote between the row read above and this command's
        // decision: the row plus the command's events is what the projector
        // writes. Otherwise the row is read back.
        let untouched = u64::try_from(ticket.version).is_ok_and(|v| v + landed.appended() == landed.version);
        let id = ticket.id;
        let version = i64::try_from(landed.version).unwrap_or(i64::MAX);
        let after = |row: TicketRow| projections::views::ticket_row_after(row, &landed.events, version, landed.at);
        let known = untouched.then(|| after(ticket));
        self.ticket_after(id, &landed, known, |row| row.map(after)).await
    }

    async fn seal(&self, ticket: TicketId, field: SealedField, text: &str) -> ApiResult<SealedText> {
        let key =
            self.keys.get(ticket).await?.ok_or_else(|| ApiError::BadInput("ticket's text has been erased".into()))?;
        Ok(key.seal(ticket.as_uuid(), field, text))
    }

    /// The notes in clear, for admins only; `None` for everyone else.
    ///
    /// # Errors
    /// When the key store fails or the envelope cannot be opened.
    pub async fn confidential_notes(&self, viewer: Viewer, ticket: &TicketRow) -> ApiResult<Option<String>> {
        let Some(envelope) = ticket.notes_envelope.as_ref().filter(|_| viewer.is_admin()) else { return Ok(None) };
        let id = TicketId::from_uuid(ticket.id);
        let Some(key) = self.keys.get(id).await? else { return Ok(None) };
        let sealed = SealedText { ciphertext: envelope.clone(), digest: String::new() };
        let notes = key.open(ticket.id, SealedField::ConfidentialNotes, &sealed).map_err(ApiError::internal)?;
        Ok(Some(notes).filter(|n| !n.is_empty()))
    }

    /// # Errors
    /// `FORBIDDEN` for non-admins, `NOT_FOUND`, `CONFLICT`.
    pub async fn delete_ticket(
        &self,
        viewer: Viewer,
        id: &str,
        reason: Option<&str>,
        expected_version: Option<i32>,
        actor: &Actor,
    ) -> ApiResult<Uuid> {
        if !viewer.is_admin() {
            return Err(ApiError::Forbidden);
        }
        let ticket = self.ticket_for_change(viewer, id).await?;
        let ticket_id = TicketId::from_uuid(ticket.id);
        let expected_version = expected(expected_version)?;
        let reason = match reason.map(Reason::parse).transpose()?.filter(|r| !r.as_str().is_empty()) {
            Some(reason) => Some(self.seal(ticket_id, SealedField::DeletionReason, reason.as_str()).await?),
            None => None,
        };
        let version = self.write.ticket(ticket_id, TicketCommand::Delete { reason, expected_version }, actor).await?;
        self.projected(Table::Tickets, ticket.id, version, true).await;
        tracing::info!(ticket.id = %ticket.id, "ticket deleted");
        Ok(ticket.id)
    }

    /// A page of tickets in the viewer's scope.
    ///
    /// # Errors
    /// `FORBIDDEN` when a non-admin asks for deleted tickets.
    pub async fn list_tickets(&self, viewer: Viewer, mut query: TicketQuery) -> ApiResult<Vec<TicketRow>> {
        if !viewer.is_admin() {
            if query.include_deleted {
                return Err(ApiError::Forbidden);
            }
            query.visible_to_reporter = Some(viewer.id);
        }
        Ok(self.read.tickets(&query).await?)
    }
}
