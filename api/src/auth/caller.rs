//! Who is calling: resolved once per request from the Bearer token and the
//! users read model, so a demotion or a disabled account takes effect on
//! the next request rather than when the token expires. The role and the
//! disabled flag are served from `ReadModels::access`: exact for every
//! change this process projected or made, and at most `ACCESS_TTL` (one
//! second) old for changes another replica's projector applied. A token
//! issued before its user was last disabled is refused even once the user
//! is enabled again: the time of the disabling is part of that same
//! cached row, so the check costs nothing more.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use domain::values::Role;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::App;

#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub id: Uuid,
    pub role: Role,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// A token was sent but is invalid, expired, or its user may not sign in.
    Refused,
    User(Viewer),
}

impl Caller {
    /// # Errors
    /// `UNAUTHENTICATED` unless a valid user is calling.
    pub fn viewer(&self) -> ApiResult<Viewer> {
        match self {
            Caller::User(viewer) => Ok(*viewer),
            Caller::Anonymous => Err(ApiError::Unauthenticated("authentication required")),
            Caller::Refused => Err(ApiError::Unauthenticated("invalid or expired token")),
        }
    }

    /// # Errors
    /// `UNAUTHENTICATED` without a valid user, `FORBIDDEN` for non-admins.
    pub fn admin(&self) -> ApiResult<Viewer> {
        let viewer = self.viewer()?;
        if viewer.is_admin() {
            Ok(viewer)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Whether a token (access or refresh) issued at `issued` may still be
/// used by an account last disabled at `disabled_at`.
pub fn issued_since_disabling(issued: DateTime<Utc>, disabled_at: Option<DateTime<Utc>>) -> bool {
    disabled_at.is_none_or(|at| issued > at)
}

/// The Bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl App {
    /// # Errors
    /// Only when the store fails; a bad token is `Caller::Refused`.
    pub async fn caller(&self, headers: &HeaderMap) -> ApiResult<Caller> {
        self.caller_with(bearer(headers)).await
    }

    /// The caller an access token (if any) names, checked as [`App::caller`] does.
    ///
    /// # Errors
    /// Only when the store fails; a bad token is `Caller::Refused`.
    pub async fn caller_with(&self, token: Option<&str>) -> ApiResult<Caller> {
        let Some(token) = token else { return Ok(Caller::Anonymous) };
        let Ok(subject) = self.jwt.access_subject(token) else { return Ok(Caller::Refused) };
        let id = subject.id;
        let caller = match self.read.access(id).await? {
            Some(user) if !user.disabled && issued_since_disabling(subject.issued, user.disabled_at) => {
                match Role::parse(&user.role) {
                    Ok(role) => Caller::User(Viewer { id, role }),
                    Err(_) => Caller::Refused,
                }
            }
            _ => Caller::Refused,
        };
        Ok(caller)
    }
}
