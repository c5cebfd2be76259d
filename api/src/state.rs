//! Application state: everything a request needs, built once at start-up.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use commands::keys::KeyRing;
use commands::write::WriteSide;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use projections::read::{ReadModels, Table};
use uuid::Uuid;

use crate::auth::password::PasswordHasher;
use crate::auth::sessions::Sessions;
use crate::auth::tokens::JwtKeys;
use crate::blobs::Blobs;
use crate::config::Settings;
use crate::error::{ApiError, ApiResult};

/// How long a mutation waits for the projector before answering anyway.
const READ_YOUR_WRITES: Duration = Duration::from_secs(10);

pub struct App {
    pub settings: Settings,
    pub write: WriteSide,
    pub read: ReadModels,
    pub keys: KeyRing,
    pub jwt: JwtKeys,
    pub hasher: PasswordHasher,
    pub sessions: Sessions,
    pub blobs: Blobs,
    pub limits: RateLimits,
    /// Long histories answered at once (`graphql::admission`).
    pub budget: crate::graphql::admission::Budget,
}

pub type AppState = Arc<App>;

impl App {
    /// Waits until the read model shows `version` of a ticket or user, so the
    /// mutation answers with its own effect. `false` when the projector is
    /// held back (on PostgreSQL a long transaction anywhere on the server
    /// does that) or the wait itself fails: the command's events are
    /// durable by then, so the caller answers from what it wrote rather
    /// than with an error a client would retry.
    pub async fn projected(&self, table: Table, id: Uuid, version: u64, appended_here: bool) -> bool {
        match self.read.wait_for(table, id, version, appended_here, READ_YOUR_WRITES).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(%id, version, "projector is behind; answering from the command");
                false
            }
            Err(error) => {
                tracing::warn!(%id, version, error = %error, "cannot wait for the projector; answering from the command");
                false
            }
        }
    }
}

/// Sign-in and sign-up throttles, per email and per client address.
pub struct RateLimits {
    login_per_email: DefaultKeyedRateLimiter<String>,
    auth_per_client: DefaultKeyedRateLimiter<String>,
    /// `/graphql/ws` connections opened per client address.
    live_per_client: DefaultKeyedRateLimiter<String>,
}

impl Default for RateLimits {
    fn default() -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            login_per_email: RateLimiter::keyed(per_minute(10)),
            auth_per_client: RateLimiter::keyed(per_minute(60)),
            live_per_client: RateLimiter::keyed(per_minute(120)),
        }
    }
}

impl RateLimits {
    /// Forgets keys whose budget is full again, so the limiters' memory
    /// follows recent traffic rather than every address ever seen.
    pub fn forget_idle(&self) {
        self.login_per_email.retain_recent();
        self.auth_per_client.retain_recent();
        self.live_per_client.retain_recent();
    }

    /// # Errors
    /// `TOO_MANY_REQUESTS` once `client` opened its minute's live connections.
    pub fn check_live(&self, client: &str) -> ApiResult<()> {
        self.live_per_client.check_key(&client.to_owned()).map_err(|_| ApiError::TooManyRequests)
    }

    /// # Errors
    /// `TOO_MANY_REQUESTS` when either budget is spent.
    pub fn check(&self, email: Option<&str>, client: &str) -> ApiResult<()> {
        let client_ok = self.auth_per_client.check_key(&client.to_owned()).is_ok();
        let email_ok = email.is_none_or(|email| self.login_per_email.check_key(&email.to_lowercase()).is_ok());
        if client_ok && email_ok {
            Ok(())
        } else {
            Err(ApiError::TooManyRequests)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_connections_are_counted_per_client() {
        let limits = RateLimits::default();
        for _ in 0..120 {
            limits.check_live("192.0.2.1").expect("within the minute's budget");
        }
        assert!(matches!(limits.check_live("192.0.2.1"), Err(ApiError::TooManyRequests)));
        assert!(limits.check_live("192.0.2.2").is_ok(), "another client has its own budget");
    }
}
