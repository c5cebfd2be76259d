//! Leases: a named critical section shared by every process on the
//! database. A holder that dies loses its lease when the time runs out.

use std::future::Future;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use uuid::Uuid;

use crate::db::Db;
use crate::on_db;

/// Why a lease could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {0} is busy")]
    Busy(&'static str),
    #[error("lease store failure: {0}")]
    Store(#[from] sqlx::Error),
}

const TAKE: &str = "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
    WHERE leases.holder IS NULL OR leases.expires_at < $4";
const GIVE_BACK: &str = "UPDATE leases SET holder = NULL WHERE name = $1 AND holder = $2";

/// Runs `work` while holding the lease `name` (held at most `ttl`, waited
/// for at most `wait`), and gives it back whatever `work` returns.
///
/// # Errors
/// `Busy` when the lease stays taken, or a store failure.
pub async fn with_lease<T, F, Fut>(
    db: &Db,
    name: &'static str,
    ttl: Duration,
    wait: Duration,
    work: F,
) -> Result<T, LeaseError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let holder = Uuid::new_v4().to_string();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = Utc::now().trunc_subsecs(6);
        let until = now + chrono::Duration::from_std(ttl).unwrap_or_default();
        let taken = on_db!(db, pool => sqlx::query(TAKE).bind(name).bind(&holder).bind(until).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        if taken == 1 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LeaseError::Busy(name));
        }
        tokio::time::sleep(Duration::from_millis(10 + rand::random::<u64>() % 20)).await;
    }
    // Given back even when the caller stops waiting (a dropped request).
    let mut held = Held { db: db.clone(), name, holder: Some(holder) };
    let result = work().await;
    if let Some(holder) = held.holder.take() {
        give_back(db, name, &holder).await?;
    }
    Ok(result)
}

async fn give_back(db: &Db, name: &str, holder: &str) -> Result<(), sqlx::Error> {
    on_db!(db, pool => sqlx::query(GIVE_BACK).bind(name).bind(holder).execute(pool).await.map(|_| ()))
}

struct Held {
    db: Db,
    name: &'static str,
    holder: Option<String>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let (Some(holder), Ok(runtime)) = (self.holder.take(), tokio::runtime::Handle::try_current()) {
            let (db, name) = (self.db.clone(), self.name);
            runtime.spawn(async move {
                let _ = give_back(&db, name, &holder).await;
            });
        }
    }
}
