//! Housekeeping of idempotency keys (see `graphql::idempotency`).

use crate::state::App;

impl App {
    /// Forgets the idempotency keys first used over 24 hours ago.
    pub async fn forget_idempotency_keys(&self) {
        match commands::idempotency::purge(self.write.db()).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "expired idempotency keys forgotten"),
            Err(error) => tracing::warn!(error = %error, "cannot forget expired idempotency keys"),
        }
    }
}
