//! One error type for the API: every failure becomes a GraphQL error with
//! `extensions.code`, and internals are logged once, never shown.

use async_graphql::ErrorExtensions as _;
use commands::keys::KeyError;
use commands::write::WriteError;
use domain::account::AccountError;
use domain::ticket::TicketError;
use domain::values::InvalidInput;

/// Deliberately not `Display`: async-graphql turns any `Display` error into
/// a message without a code, so the only way out is the `From` below.
#[derive(Debug, Clone)]
pub enum ApiError {
    Unauthenticated(&'static str),
    Forbidden,
    NotFound(&'static str),
    BadInput(String),
    Conflict(String),
    TooManyRequests,
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    /// The change was made (its events are durable), but the answer could
    /// not be built: the client must not repeat it blindly. Logged.
    CommittedUnconfirmed(String),
    /// Logged, never shown.
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadInput(_) => "BAD_USER_INPUT",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::TooManyRequests => "TOO_MANY_REQUESTS",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::CommittedUnconfirmed(_) => "COMMITTED_UNCONFIRMED",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
    }

    /// This error as met after the command's events were made durable: an
    /// internal failure then means the change was made but not confirmed.
    #[must_use]
    pub fn after_commit(self) -> Self {
        match self {
            ApiError::Internal(detail) => ApiError::CommittedUnconfirmed(detail),
            other => other,
        }
    }

    /// For operators (CLI, start-up): the message, or the internal detail.
    pub fn describe(&self) -> String {
        match self {
            ApiError::Internal(detail) => format!("internal error: {detail}"),
            ApiError::CommittedUnconfirmed(detail) => format!("committed, unconfirmed: {detail}"),
            other => other.message(),
        }
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated(message) => (*message).to_owned(),
            ApiError::Forbidden => "not allowed".to_owned(),
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::BadInput(message)
            | ApiError::Conflict(message)
            | ApiError::PayloadTooLarge(message)
            | ApiError::UnsupportedMediaType(message) => message.clone(),
            ApiError::TooManyRequests => "too many requests; try again later".to_owned(),
            ApiError::CommittedUnconfirmed(_) => {
                "the change was made but its result could not be read; read it rather than repeat it".to_owned()
            }
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        match &error {
            ApiError::Internal(detail) => tracing::error!(error = %detail, "request failed"),
            ApiError::CommittedUnconfirmed(detail) => {
                tracing::error!(error = %detail, "request's change was made but its answer failed");
            }
            _ => {}
        }
        let code = error.code();
        async_graphql::Error::new(error.message()).extend_with(|_, ext| ext.set("code", code))
    }
}

impl From<InvalidInput> for ApiError {
    fn from(error: InvalidInput) -> Self {
        ApiError::BadInput(error.0)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        ApiError::internal(error)
    }
}

impl From<WriteError<TicketError>> for ApiError {
    fn from(error: WriteError<TicketError>) -> Self {
        match error {
            WriteError::Rejected(TicketError::NotFound) => ApiError::NotFound("ticket"),
            WriteError::Rejected(error @ TicketError::VersionConflict { .. }) => ApiError::Conflict(error.to_string()),
            WriteError::Rejected(error @ TicketError::AlreadyExists) => ApiError::Conflict(error.to_string()),
            WriteError::Rejected(error) => ApiError::BadInput(error.to_string()),
            WriteError::Contended => ApiError::Conflict("too many concurrent changes; try again".into()),
            WriteError::KeyTaken(error) => ApiError::Conflict(error.to_string()),
            WriteError::Store(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<WriteError<AccountError>> for ApiError {
    fn from(error: WriteError<AccountError>) -> Self {
        match error {
            WriteError::Rejected(AccountError::NotFound) => ApiError::NotFound("user"),
            WriteError::Rejected(error @ AccountError::EmailTaken) => ApiError::BadInput(error.to_string()),
            WriteError::Contended => ApiError::Conflict("too many concurrent changes; try again".into()),
            WriteError::KeyTaken(error) => ApiError::Conflict(error.to_string()),
            WriteError::Store(detail) => ApiError::Internal(detail),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
