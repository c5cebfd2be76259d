//! Application state: everything a request needs, built once at start-up.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use commands::keys::KeyRing;
use commands::write::WriteSide;
use governor::Quota;
use projections::read::{ReadModels, Table};
use uuid::Uuid;

use crate::auth::bounded_keys::KeyedLimiter;
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

impl App {
    /// Waits while a rebuild of the read models is unfinished (one was
    /// stopped half way): the projector finishes it, and until then the
    /// read models would answer as if whole while they are not.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn read_models_whole(&self) -> ApiResult<()> {
        let mut told = false;
        while projections::projector::rebuild_unfinished(self.read.db()).await? {
            if !told {
                tracing::warn!("waiting for the projector to finish an interrupted rebuild of the read models");
                told = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

/// Sign-in and sign-up throttles, per email and per client address, each
/// holding a bounded number of keys (`auth::bounded_keys`).
pub struct RateLimits {
    login_per_email: KeyedLimiter,
    auth_per_client: KeyedLimiter,
    /// `/graphql/ws` connections opened per client address.
    live_per_client: KeyedLimiter,
}

impl Default for RateLimits {
    fn default() -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            login_per_email: KeyedLimiter::new(per_minute(10)),
            auth_per_client: KeyedLimiter::new(per_minute(60)),
            live_per_client: KeyedLimiter::new(per_minute(120)),
        }
    }
}

impl RateLimits {
    /// Forgets keys whose budget is full again, so the limiters' memory
    /// follows recent traffic rather than every address ever seen.
    pub fn forget_idle(&self) {
        self.login_per_email.forget_idle();
        self.auth_per_client.forget_idle();
        self.live_per_client.forget_idle();
    }

    /// # Errors
    /// `TOO_MANY_REQUESTS` once `client` opened its minute's live connections.
    pub fn check_live(&self, client: &str) -> ApiResult<()> {
        self.live_per_client.check(client).then_some(()).ok_or(ApiError::TooManyRequests)
    }

    /// The client's budget first: a request it refuses spends nothing of
    /// the email's, so a flood from one address cannot lock an account out
    /// nor fill the per-email limiter. `email` is the normalised address.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` when either budget is spent.
    pub fn check(&self, email: Option<&str>, client: &str) -> ApiResult<()> {
        let allowed = self.auth_per_client.check(client) && email.is_none_or(|email| self.login_per_email.check(email));
        allowed.then_some(()).ok_or(ApiError::TooManyRequests)
    }

    /// Emails with a budget held now (for tests of the bound).
    pub fn emails_held(&self) -> usize {
        self.login_per_email.keys()
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

    #[test]
    fn a_request_the_client_limit_refuses_records_no_email() {
        let limits = RateLimits::default();
        for i in 0..60 {
            limits.check(Some(&format!("user{i}@example.com")), "192.0.2.1").expect("within the budget");
        }
        assert_eq!(limits.emails_held(), 60);
        for i in 60..200 {
            let refused = limits.check(Some(&format!("user{i}@example.com")), "192.0.2.1");
            assert!(matches!(refused, Err(ApiError::TooManyRequests)));
        }
        assert_eq!(limits.emails_held(), 60, "refused requests left keys behind");
    }
}
