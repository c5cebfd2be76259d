//! Write operations. Each answers with state that includes its own effect.

use async_graphql::{Context, Object, ID};
use secrecy::SecretString;

use super::types::{AuthPayload, CreateTicketInput, RegisterInput, Role, Ticket, UpdateTicketInput, User};
use super::{actor, app, caller, info};
use crate::error::ApiResult;
use crate::service::tickets::TicketEdit;

pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates an EMPLOYEE account and signs it in.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> ApiResult<AuthPayload> {
        let app = app(ctx);
        app.limits.check(None, &info(ctx).client)?;
        let session = app
            .register(&input.email, SecretString::from(input.password), &input.display_name, &actor(ctx))
            .await?;
        Ok(session.into())
    }

    async fn login(&self, ctx: &Context<'_>, email: String, #[graphql(secret)] password: String) -> ApiResult<AuthPayload> {
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
        let row = app(ctx).create_ticket(viewer, &input.title, &input.description, &actor(ctx)).await?;
        Ok(Ticket(row))
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
        Ok(Ticket(app(ctx).update_ticket(viewer, &id, edit, &actor(ctx)).await?))
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
