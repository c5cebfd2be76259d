//! Idempotency keys (the IETF `Idempotency-Key` header's semantics): a
//! mutation's key is claimed before it runs, bound to the change it makes
//! by the very transaction that appends its events, and answered from
//! once its outcome is known. The table, not the process, holds it all,
//! so a key holds across crashes and across replicas.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use thiserror::Error;

use crate::db::Db;

/// How long a key is remembered after its first use.
pub const KEPT_FOR: Duration = Duration::from_secs(24 * 3600);
/// How long a claim that recorded no change holds before a retry may take
/// it over: its request may have died with its process.
const CLAIM_LEASE: Duration = Duration::from_secs(300);

/// The change a key's mutation made: the stream and the version its
/// events brought it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub version: u64,
    pub appended: u64,
}

/// A key this request holds: `recorded` when an earlier run of the same
/// request already made its change (it is then answered, not made again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    pub token: String,
    pub recorded: Option<Recorded>,
}

/// What a key says about a request arriving with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Run it under this claim.
    Claimed(Claim),
    /// The same request's stored answer.
    Answered(String),
    /// The key was used for another request.
    Mismatch,
    /// The same request is running now.
    InFlight,
}

/// The key no longer belongs to the request appending (a retry took over
/// its lapsed claim), or already covers a change.
#[derive(Debug, Error)]
#[error("the Idempotency-Key is held by another request or already covers a change")]
pub struct KeyTaken;

tokio::task_local! {
    static APPENDING: Arc<Claim>;
}

/// Runs a request's work (its appends) under `claim`: the event repository
/// binds the key to the change in the append's own transaction, and a
/// claim whose change was already made is answered, not made again
/// ([`replaying`]).
pub async fn appending<F: std::future::Future>(claim: Option<Arc<Claim>>, append: F) -> F::Output {
    match claim {
        Some(claim) => APPENDING.scope(claim, append).await,
        None => append.await,
    }
}

/// The claim an append in progress records its change under, if any.
pub fn current() -> Option<Arc<Claim>> {
    APPENDING.try_with(Arc::clone).ok().filter(|claim| claim.recorded.is_none())
}

/// The change already made by an earlier run of the request at work.
pub fn replaying() -> Option<Recorded> {
    APPENDING.try_with(|claim| claim.recorded.clone()).ok().flatten()
}

/// Binds, in order: aggregate type, id, version, appended, scope, key, claim.
pub const RECORD: &str = "UPDATE idempotency_keys SET aggregate_type = $1, aggregate_id = $2, version = $3, \
    appended = $4 WHERE scope = $5 AND idem_key = $6 AND claim = $7 AND aggregate_id IS NULL";

/// A new key, or one whose 24 hours are over, is claimed at once.
const CLAIM: &str = "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, claim, created_ms, claimed_ms) \
    VALUES ($1, $2, $3, $4, $5, $5) \
    ON CONFLICT (scope, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint, claim = excluded.claim, \
    created_ms = excluded.created_ms, claimed_ms = excluded.claimed_ms, aggregate_type = NULL, \
    aggregate_id = NULL, version = NULL, appended = NULL, response = NULL \
    WHERE idempotency_keys.created_ms < $6 RETURNING claim";
const FIND: &str = "SELECT fingerprint, claim, claimed_ms, aggregate_type, aggregate_id, version, appended, response \
    FROM idempotency_keys WHERE scope = $1 AND idem_key = $2";
const TAKE_OVER: &str = "UPDATE idempotency_keys SET claim = $1, claimed_ms = $2 \
    WHERE scope = $3 AND idem_key = $4 AND claim = $5 AND aggregate_id IS NULL AND response IS NULL";
const ANSWER: &str =
    "UPDATE idempotency_keys SET response = $1 WHERE scope = $2 AND idem_key = $3 AND claim = $4 AND response IS NULL";
const RELEASE: &str =
    "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND claim = $3 AND aggregate_id IS NULL";
const PURGE: &str = "DELETE FROM idempotency_keys WHERE created_ms < $1";

#[derive(sqlx::FromRow)]
struct Row {
    fingerprint: String,
    claim: String,
    claimed_ms: i64,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    version: Option<i64>,
    appended: Option<i64>,
    response: Option<String>,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Claims `key` in `scope` for a request whose digest is `fingerprint`, or
/// says why the request must not run.
///
/// # Errors
/// When the store fails.
pub async fn claim(db: &Db, scope: &str, key: &str, fingerprint: &str) -> Result<Found, sqlx::Error> {
    // A claim released or taken over between two statements is looked at again.
    for _ in 0..3 {
        let now = Utc::now().timestamp_millis();
        let token = uuid::Uuid::new_v4().to_string();
        let claimed: Option<String> = crate::on_db!(db, pool => sqlx::query_scalar(CLAIM)
            .bind(scope).bind(key).bind(fingerprint).bind(&token).bind(now).bind(now - millis(KEPT_FOR))
            .fetch_optional(pool).await)?;
        let fresh = |token: String| Claim { scope: scope.to_owned(), key: key.to_owned(), token, recorded: None };
        if claimed.as_deref() == Some(token.as_str()) {
            return Ok(Found::Claimed(fresh(token)));
        }
        let row: Option<Row> =
            crate::on_db!(db, pool => sqlx::query_as(FIND).bind(scope).bind(key).fetch_optional(pool).await)?;
        let Some(row) = row else { continue };
        if row.fingerprint != fingerprint {
            return Ok(Found::Mismatch);
        }
        if let Some(response) = row.response {
            return Ok(Found::Answered(response));
        }
        if let (Some(aggregate_type), Some(aggregate_id)) = (row.aggregate_type, row.aggregate_id) {
            let recorded = Recorded {
                aggregate_type,
                aggregate_id,
                version: row.version.and_then(|v| u64::try_from(v).ok()).unwrap_or_default(),
                appended: row.appended.and_then(|v| u64::try_from(v).ok()).unwrap_or_default(),
            };
            return Ok(Found::Claimed(Claim { recorded: Some(recorded), ..fresh(row.claim) }));
        }
        if row.claimed_ms >= now - millis(CLAIM_LEASE) {
            return Ok(Found::InFlight);
        }
        let taken = crate::on_db!(db, pool => sqlx::query(TAKE_OVER)
            .bind(&token).bind(now).bind(scope).bind(key).bind(&row.claim)
            .execute(pool).await.map(|done| done.rows_affected()))?;
        if taken == 1 {
            return Ok(Found::Claimed(fresh(token)));
        }
    }
    Ok(Found::InFlight)
}

/// Stores the answer to the claim's request, for its retries.
///
/// # Errors
/// When the store fails.
pub async fn answer(db: &Db, claim: &Claim, response: &str) -> Result<(), sqlx::Error> {
    crate::on_db!(db, pool => sqlx::query(ANSWER)
        .bind(response).bind(&claim.scope).bind(&claim.key).bind(&claim.token)
        .execute(pool).await.map(|_| ()))
}

/// Gives a claim back when its request changed nothing, so that a retry
/// runs afresh; a claim that recorded a change stays.
///
/// # Errors
/// When the store fails.
pub async fn release(db: &Db, claim: &Claim) -> Result<(), sqlx::Error> {
    crate::on_db!(db, pool => sqlx::query(RELEASE)
        .bind(&claim.scope).bind(&claim.key).bind(&claim.token)
        .execute(pool).await.map(|_| ()))
}

/// Forgets keys first used more than [`KEPT_FOR`] ago; returns how many.
///
/// # Errors
/// When the store fails.
pub async fn purge(db: &Db) -> Result<u64, sqlx::Error> {
    let before = Utc::now().timestamp_millis() - millis(KEPT_FOR);
    crate::on_db!(db, pool => sqlx::query(PURGE).bind(before).execute(pool).await.map(|done| done.rows_affected()))
}
