//! Idempotency keys on real stores: claimed once, bound to the change in
//! the append's transaction, and a run under a key whose change was made
//! appends nothing.

use std::sync::Arc;

use commands::db::Db;
use commands::idempotency::{self, Claim, Found};
use commands::write::{Actor, WriteError};
use domain::ticket::TicketError;
use domain::values::Priority;

use super::{open_ticket, priority};

async fn claimed(db: &Db, scope: &str, key: &str, fingerprint: &str) -> Claim {
    match idempotency::claim(db, scope, key, fingerprint).await.expect("the store answers") {
        Found::Claimed(claim) => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

async fn events(db: &Db) -> i64 {
    commands::on_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(pool).await)
        .expect("a count")
}

test_support::store_test!(a_key_is_claimed_once_per_scope, |db| async move {
    let claim = claimed(&db, "alice", "k1", "digest-a").await;
    assert_eq!(claim.recorded, None);
    let again = idempotency::claim(&db, "alice", "k1", "digest-a").await.unwrap();
    assert_eq!(again, Found::InFlight, "the same request while the first runs");
    let other = idempotency::claim(&db, "alice", "k1", "digest-b").await.unwrap();
    assert_eq!(other, Found::Mismatch, "another request with the same key");
    claimed(&db, "bob", "k1", "digest-b").await;

    idempotency::answer(&db, &claim, "{\"data\":1}").await.unwrap();
    let answered = idempotency::claim(&db, "alice", "k1", "digest-a").await.unwrap();
    assert_eq!(answered, Found::Answered("{\"data\":1}".into()));

    // A request that changed nothing gives its key back.
    let bobs = claimed(&db, "bob", "k2", "digest-c").await;
    idempotency::release(&db, &bobs).await.unwrap();
    claimed(&db, "bob", "k2", "digest-c").await;
    assert_eq!(idempotency::purge(&db).await.unwrap(), 0, "nothing is 24 hours old yet");
});

test_support::store_test!(a_recorded_change_is_not_made_twice, |db| async move {
    let (write, id) = open_ticket(&db).await;
    let actor = Actor::system("test");
    let claim = Arc::new(claimed(&db, "alice", "k1", "digest").await);
    let first =
        idempotency::appending(Some(claim.clone()), write.ticket_landed(id, priority(Priority::High, None), &actor))
            .await
            .unwrap();
    assert_eq!(first.version, 2);
    // The answer was lost (a crash): the key still knows the change.
    idempotency::release(&db, &claim).await.unwrap();
    let retry = claimed(&db, "alice", "k1", "digest").await;
    let recorded = retry.recorded.clone().expect("the change is recorded with the key");
    assert_eq!((recorded.aggregate_id.as_str(), recorded.version, recorded.appended), (id.to_string().as_str(), 2, 1));

    let before = events(&db).await;
    let replayed =
        idempotency::appending(Some(Arc::new(retry)), write.ticket_landed(id, priority(Priority::Low, None), &actor))
            .await
            .unwrap();
    assert_eq!(events(&db).await, before, "a retry appends nothing");
    assert_eq!(replayed, first, "and lands where the first run did");
});

test_support::store_test!(a_key_taken_over_appends_nothing, |db| async move {
    let (write, id) = open_ticket(&db).await;
    let claim = Arc::new(claimed(&db, "alice", "k1", "digest").await);
    commands::on_db!(&db, pool => sqlx::query("UPDATE idempotency_keys SET claim = 'a retry'").execute(pool).await.map(|_| ()))
        .unwrap();
    let before = events(&db).await;
    let lost =
        idempotency::appending(Some(claim), write.ticket(id, priority(Priority::High, None), &Actor::system("t")))
            .await;
    assert!(matches!(lost, Err(WriteError::<TicketError>::KeyTaken(_))), "{lost:?}");
    assert_eq!(events(&db).await, before);
});

test_support::store_test!(a_key_expires_after_a_day, |db| async move {
    let claim = claimed(&db, "alice", "old", "digest-a").await;
    idempotency::answer(&db, &claim, "{}").await.unwrap();
    claimed(&db, "alice", "new", "digest-a").await;
    let day_ago = chrono::Utc::now().timestamp_millis() - 24 * 3600 * 1000 - 1;
    let age = format!("UPDATE idempotency_keys SET created_ms = {day_ago} WHERE idem_key = 'old'");
    commands::on_db!(&db, pool => sqlx::query(&age).execute(pool).await.map(|_| ())).unwrap();
    // Past its day the key is free for another request...
    let reused = claimed(&db, "alice", "old", "digest-b").await;
    assert_eq!(reused.recorded, None);
    // ...and the housekeeping forgets it.
    commands::on_db!(&db, pool => sqlx::query(&age).execute(pool).await.map(|_| ())).unwrap();
    assert_eq!(idempotency::purge(&db).await.unwrap(), 1, "only the expired key");
    assert_eq!(idempotency::claim(&db, "alice", "new", "digest-a").await.unwrap(), Found::InFlight);
});
