//! Write operations. Each answers with state that includes its own effect.

use async_graphql::{Context, Object, Upload, UploadValue, ID};
use secrecy::SecretString;

use super::types::{Attachment, AuthPayload, CreateTicketInput, RegisterInput, Role, Ticket, UpdateTicketInput, User};
use super::{actor, app, caller, info};
use crate::error::{ApiError, ApiResult};
use crate::service::attachments::MAX_FILES_PER_REQUEST;
use crate::service::tickets::TicketEdit;

pub struct Mutation;

fn upload_values(ctx: &Context<'_>, uploads: Vec<Upload>) -> ApiResult<Vec<UploadValue>> {
    if uploads.len() > MAX_FILES_PER_REQUEST {
        return Err(ApiError::PayloadTooLarge(format!("at most {MAX_FILES_PER_REQUEST} files per request")));
    }
    uploads
        .iter()
        .map(|upload| upload.value(ctx).map_err(|_| ApiError::BadInput("a file is missing from the request".into())))
        .collect()
}

#[Object]
impl Mutation {
    /// Creates an EMPLOYEE account and signs it in.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> ApiResult<AuthPayload> {
        let app = app(ctx);
        app.limits.check(None, &info(ctx).client)?;
        let session =
            app.register(&input.email, SecretString::from(input.password), &input.display_name, &actor(ctx)).await?;
        Ok(session.into())
    }

    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        #[graphql(secret)] password: String,
    ) -> ApiResult<AuthPayload> {
        Ok(app(ctx).login(&email, SecretString::from(password), &info(ctx).client).await?.into())
    }

    /// Trades a refresh token for new tokens; each refresh token works once.
    async fn refresh(&self, ctx: &Context<'_>, #[graphql(secret)] refresh_token: String) -> ApiResult<AuthPayload> {
        Ok(app(ctx).refresh(&refresh_token, &info(ctx).client).await?.into())
    }

    /// Revokes the refresh token's session.
    async fn logout(&self, ctx: &Context<'_>, #[graphql(secret)] refresh_token: String) -> ApiResult<bool> {
        app(ctx).logout(&refresh_token).await
    }

    async fn create_ticket(&self, ctx: &Context<'_>, input: CreateTicketInput) -> ApiResult<Ticket> {
        let viewer = caller(ctx).viewer()?;
        let uploads = upload_values(ctx, input.attachments.unwrap_or_default())?;
        let row = app(ctx).create_ticket(viewer, &input.title, &input.description, uploads, &actor(ctx)).await?;
        Ok(Ticket::from(row))
    }

    /// Adds evidence to a ticket the caller may see.
    async fn add_attachment(&self, ctx: &Context<'_>, ticket_id: ID, file: Upload) -> ApiResult<Attachment> {
        let viewer = caller(ctx).viewer()?;
        let mut uploads = upload_values(ctx, vec![file])?;
        let row = app(ctx).add_attachment(viewer, &ticket_id, uploads.remove(0), &actor(ctx)).await?;
        Ok(Attachment(row))
    }

    /// Admins only. `expectedVersion` turns a stale edit into `CONFLICT`.
    async fn update_ticket(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateTicketInput,
        expected_version: Option<i32>,
    ) -> ApiResult<Ticket> {
        let viewer = caller(ctx).viewer()?;
        let edit = TicketEdit {
            status: input.status.map(Into::into),
            priority: input.priority.map(Into::into),
            assignee: input.assignee_id.map(|id| id.0),
            clear_assignee: input.clear_assignee.unwrap_or(false),
            confidential_notes: input.confidential_notes,
            expected_version,
        };
        Ok(Ticket::from(app(ctx).update_ticket(viewer, &id, edit, &actor(ctx)).await?))
    }

    /// Admins only. The ticket's history is kept; it accepts no more changes.
    async fn delete_ticket(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i32>,
        reason: Option<String>,
    ) -> ApiResult<ID> {
        let viewer = caller(ctx).viewer()?;
        let deleted = app(ctx).delete_ticket(viewer, &id, reason.as_deref(), expected_version, &actor(ctx)).await?;
        Ok(ID(deleted.to_string()))
    }

    /// Admins only; the last admin cannot be demoted.
    async fn set_user_role(&self, ctx: &Context<'_>, user_id: ID, role: Role) -> ApiResult<User> {
        caller(ctx).admin()?;
        Ok(User(app(ctx).set_role(&user_id, role.into(), &actor(ctx)).await?))
    }

    /// Admins only: a disabled user's tokens stop working at once.
    async fn set_user_disabled(&self, ctx: &Context<'_>, user_id: ID, disabled: bool) -> ApiResult<User> {
        caller(ctx).admin()?;
        Ok(User(app(ctx).set_disabled(&user_id, disabled, &actor(ctx)).await?))
    }
}
