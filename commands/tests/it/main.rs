//! The write side against real stores: snapshots must not change decisions.

use commands::db::Db;
use commands::keys::KeyRing;
use commands::write::WriteSide;
use commands::write::{Actor, WriteError};
use domain::sealed::SealedField;
use domain::ticket::{TicketCommand, TicketError, TicketEvent, TicketUpdate};
use domain::values::{Priority, Status, TicketId, UserId};
use uuid::Uuid;

mod sqlite_pool;

async fn open_ticket(db: &Db) -> (commands::write::WriteSide, TicketId) {
    let write = commands::write::WriteSide::new(db.clone());
    let keys = KeyRing::new(db.clone(), test_support::master_keys());
    let id = TicketId::from_uuid(Uuid::new_v4());
    let key = keys.create(id).await.unwrap();
    let command = TicketCommand::Open {
        id,
        reporter: UserId::from_uuid(Uuid::new_v4()),
        title: key.seal(id.as_uuid(), SealedField::Title, "printer"),
        description: key.seal(id.as_uuid(), SealedField::Description, "jammed"),
        attachments: vec![],
    };
    assert_eq!(write.ticket(id, command, &Actor::system("test")).await.unwrap(), 1);
    (write, id)
}

fn priority(to: Priority, expected_version: Option<u64>) -> TicketCommand {
    TicketCommand::Update(TicketUpdate { priority: Some(to), expected_version, ..Default::default() })
}

// Every command snapshots its aggregate; a version computed from a snapshot
// that counted its last events twice would turn every later expected
// version into a conflict.
test_support::store_test!(versions_stay_exact_across_snapshots, |db| async move {
    let (write, id) = open_ticket(&db).await;
    let actor = Actor::system("test");
    let mut version = 1;
    for n in 0..130u64 {
        let to = if n % 2 == 0 { Priority::High } else { Priority::Low };
        version = write.ticket(id, priority(to, Some(version)), &actor).await.unwrap();
        assert_eq!(version, n + 2);
    }
    // Decided on the remembered state and, by another process, on the snapshot.
    let stale = write.ticket(id, priority(Priority::Medium, Some(version - 1)), &actor).await;
    assert!(matches!(
        stale,
        Err(WriteError::Rejected(TicketError::VersionConflict { expected, actual })) if expected == version - 1 && actual == version
    ));
    let stale = WriteSide::new(db.clone()).ticket(id, priority(Priority::Medium, Some(version - 1)), &actor).await;
    assert!(matches!(
        stale,
        Err(WriteError::Rejected(TicketError::VersionConflict { expected, actual })) if expected == version - 1 && actual == version
    ));
    let events: i64 =
        commands::on_db!(&db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(pool).await).unwrap();
    assert_eq!(u64::try_from(events).unwrap(), version);
});

test_support::store_test!(a_no_op_returns_the_current_version, |db| async move {
    let (write, id) = open_ticket(&db).await;
    let actor = Actor::system("test");
    assert_eq!(write.ticket(id, priority(Priority::Medium, None), &actor).await.unwrap(), 1);
    assert_eq!(write.ticket(id, priority(Priority::High, None), &actor).await.unwrap(), 2);
    assert_eq!(write.ticket(id, priority(Priority::High, Some(2)), &actor).await.unwrap(), 2);
});

async fn count_events(db: &Db) -> i64 {
    commands::on_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(pool).await).unwrap()
}

// An opening is first tried without reading the store; an id that is taken
// after all must end in the aggregate's refusal, not a second stream.
test_support::store_test!(opening_a_taken_id_is_refused, |db| async move {
    let (write, id) = open_ticket(&db).await;
    let sealed = || domain::sealed::SealedText { ciphertext: "not read".into(), digest: String::new() };
    let again = TicketCommand::Open {
        id,
        reporter: UserId::from_uuid(Uuid::new_v4()),
        title: sealed(),
        description: sealed(),
        attachments: vec![],
    };
    let refused = write.ticket(id, again, &Actor::system("test")).await;
    assert!(matches!(refused, Err(WriteError::Rejected(TicketError::AlreadyExists))), "{refused:?}");
    assert_eq!(count_events(&db).await, 1);
});

// A snapshot the aggregate can no longer read (its shape changed) is
// ignored: the stream is replayed from its first event, and the next
// command's snapshot replaces the stale one.
test_support::store_test!(an_unreadable_snapshot_is_replayed_over, |db| async move {
    let (write, id) = open_ticket(&db).await;
    let actor = Actor::system("test");
    let mut version = 1;
    for n in 0..60u64 {
        let to = if n % 2 == 0 { Priority::High } else { Priority::Low };
        version = write.ticket(id, priority(to, Some(version)), &actor).await.unwrap();
    }
    let stale = commands::on_db!(&db, pool => sqlx::query("UPDATE snapshots SET payload = '{\"shape\": \"old\"}'")
        .execute(pool).await.map(|done| done.rows_affected()))
    .unwrap();
    assert_eq!(stale, 1);
    // Another process: it knows the stream only from the store.
    let write = WriteSide::new(db.clone());
    for n in 0..45u64 {
        let to = if n % 2 == 0 { Priority::High } else { Priority::Low };
        version = write.ticket(id, priority(to, Some(version)), &actor).await.unwrap();
    }
    assert_eq!(version, 106);
    assert_eq!(count_events(&db).await, 106);
    let conflict = write.ticket(id, priority(Priority::Medium, Some(100)), &actor).await;
    assert!(matches!(conflict, Err(WriteError::Rejected(TicketError::VersionConflict { expected: 100, actual: 106 }))));
    let (last_sequence, payload): (i64, String) = commands::on_db!(&db, pool => sqlx::query_as(
        "SELECT last_sequence, CAST(payload AS TEXT) FROM snapshots").fetch_one(pool).await)
    .unwrap();
    assert_eq!(last_sequence, 106);
    assert!(!payload.contains("old"), "{payload}");
});

// Writers racing on one ticket append one gapless sequence.
test_support::store_test!(racing_writers_append_one_gapless_sequence, |db| async move {
    let (write, id) = open_ticket(&db).await;
    let write = std::sync::Arc::new(write);
    let mut tasks = Vec::new();
    for n in 0..8u64 {
        let write = write.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for m in 0..10u64 {
                let to = if (n + m) % 2 == 0 { Priority::High } else { Priority::Low };
                let command = TicketCommand::Update(TicketUpdate {
                    priority: Some(to),
                    confidential_notes: None,
                    ..Default::default()
                });
                if let Ok(version) = write.ticket(id, command, &Actor::system("race")).await {
                    versions.push(version);
                }
            }
            versions
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.extend(task.await.unwrap());
    }
    let events = count_events(&db).await;
    assert!(versions.iter().all(|v| *v <= u64::try_from(events).unwrap()));
    let sequences: Vec<i64> = commands::on_db!(&db, pool => sqlx::query_scalar(
        "SELECT sequence FROM events ORDER BY sequence").fetch_all(pool).await)
    .unwrap();
    assert_eq!(sequences, (1..=events).collect::<Vec<_>>());
});

// Opening a stream writes no snapshot; every later command writes one, so
// a load reads one row however long the history.
test_support::store_test!(snapshots_start_with_the_second_command, |db| async move {
    let (write, id) = open_ticket(&db).await;
    let snapshots = || async {
        commands::on_db!(&db, pool => sqlx::query_scalar::<_, i64>("SELECT last_sequence FROM snapshots")
            .fetch_all(pool).await)
        .unwrap()
    };
    assert_eq!(snapshots().await, Vec::<i64>::new());
    let actor = Actor::system("test");
    assert_eq!(write.ticket(id, priority(Priority::High, Some(1)), &actor).await.unwrap(), 2);
    assert_eq!(snapshots().await, vec![2]);
    assert_eq!(write.ticket(id, priority(Priority::Low, Some(2)), &actor).await.unwrap(), 3);
    assert_eq!(snapshots().await, vec![3]);
});

// A new ticket's data key is stored by the statement or transaction that
// appends its first events: both exist, or neither does.
test_support::store_test!(a_new_tickets_key_lands_with_its_first_events, |db| async move {
    let write = commands::write::WriteSide::new(db.clone());
    let keys = KeyRing::new(db.clone(), test_support::master_keys());
    let open = |id: TicketId, key: &commands::cipher::DataKey| TicketCommand::Open {
        id,
        reporter: UserId::from_uuid(Uuid::new_v4()),
        title: key.seal(id.as_uuid(), SealedField::Title, "printer"),
        description: key.seal(id.as_uuid(), SealedField::Description, "jammed"),
        attachments: vec![],
    };
    let id = TicketId::from_uuid(Uuid::new_v4());
    let (key, wrapped) = keys.mint(id);
    let landed = write.open_ticket(id, wrapped, open(id, &key), &Actor::system("test")).await.unwrap();
    assert_eq!(landed.version, 1);
    let stored = keys.get(id).await.unwrap().expect("the key was stored with the first event");
    let sealed = key.seal(id.as_uuid(), SealedField::Title, "printer");
    assert_eq!(stored.open(id.as_uuid(), SealedField::Title, &sealed).unwrap(), "printer");

    // Opening the same ticket again is refused, and its key stays the first.
    let (other, other_wrapped) = keys.mint(id);
    let again = write.open_ticket(id, other_wrapped, open(id, &other), &Actor::system("test")).await;
    assert!(matches!(again, Err(WriteError::Rejected(_))), "{again:?}");
    let kept = keys.get(id).await.unwrap().unwrap();
    assert_eq!(kept.open(id.as_uuid(), SealedField::Title, &sealed).unwrap(), "printer");

    // The refused opening stored no key of its own.
    let keys_stored: i64 = commands::on_db!(&db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM data_keys")
        .fetch_one(pool).await)
    .unwrap();
    assert_eq!(keys_stored, 1);
});

fn status(to: Status, expected_version: Option<u64>) -> TicketCommand {
    TicketCommand::Update(TicketUpdate { status: Some(to), expected_version, ..Default::default() })
}

// A write side decides on the state its own last command left, without
// reading the store. Another process (here a second write side) may have
// written since: a decision on the stale state must never stand, whether
// it would append (the sequence is taken), change nothing or refuse.
test_support::store_test!(a_stale_remembered_state_never_decides, |db| async move {
    let (here, id) = open_ticket(&db).await;
    let there = WriteSide::new(db.clone());
    let actor = Actor::system("test");
    assert_eq!(here.ticket(id, status(Status::InProgress, None), &actor).await.unwrap(), 2);
    assert_eq!(there.ticket(id, status(Status::Resolved, None), &actor).await.unwrap(), 3);

    // Here the ticket is still in progress, so this would change nothing;
    // it is resolved, and a resolved ticket cannot move to in progress.
    let refused = here.ticket(id, status(Status::InProgress, None), &actor).await;
    assert!(
        matches!(
            refused,
            Err(WriteError::Rejected(TicketError::InvalidTransition {
                from: Status::Resolved,
                to: Status::InProgress
            }))
        ),
        "{refused:?}"
    );

    // Decided here from in progress, it lands from resolved, after the other write.
    let landed = here.ticket_landed(id, status(Status::Open, None), &actor).await.unwrap();
    assert_eq!(landed.version, 4);
    assert_eq!(landed.events, vec![TicketEvent::TicketStatusChanged { from: Status::Resolved, to: Status::Open }]);

    // Version 5 is stale here (here remembers 4) but current in the store.
    assert_eq!(there.ticket(id, priority(Priority::High, None), &actor).await.unwrap(), 5);
    assert_eq!(here.ticket(id, priority(Priority::Low, Some(5)), &actor).await.unwrap(), 6);
    // And a no-op that is one only here: the store's priority is low, not high.
    assert_eq!(there.ticket(id, priority(Priority::High, Some(6)), &actor).await.unwrap(), 7);
    assert_eq!(here.ticket(id, priority(Priority::Low, None), &actor).await.unwrap(), 8);
    assert_eq!(count_events(&db).await, 8);
});

// Stores made before migration 7 keep events and snapshots as `jsonb`. The
// migration turns them into `json` in place: every event and the stream's
// snapshot read back the same, and a write side that has never seen the
// stream decides on it. (A snapshot that no longer parsed would be ignored
// and the stream replayed, hence the comparison of the snapshot itself.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_stored_as_jsonb_are_kept_by_the_move_to_json() {
    const BACK_TO_JSONB: &str = "
        ALTER TABLE events ALTER COLUMN payload TYPE jsonb USING payload::jsonb,
                           ALTER COLUMN metadata TYPE jsonb USING metadata::jsonb;
        ALTER TABLE snapshots ALTER COLUMN payload TYPE jsonb USING payload::jsonb;
        DELETE FROM _sqlx_migrations WHERE version = 20261126000007";
    const EVENTS: &str = "SELECT payload::text, metadata::text FROM events ORDER BY position";
    const SNAPSHOTS: &str = "SELECT payload::text, '{}' FROM snapshots";
    const TYPES: &str = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
        WHERE attrelid IN ('events'::regclass, 'snapshots'::regclass) AND attname IN ('payload', 'metadata')";
    test_support::with_db(test_support::Store::Postgres, |db| async move {
        let Db::Postgres(pool) = &db else { unreachable!("a PostgreSQL test") };
        sqlx::raw_sql(BACK_TO_JSONB).execute(pool).await.unwrap();
        let (write, id) = open_ticket(&db).await;
        let actor = Actor::system("test");
        let mut version = 1;
        for to in [Priority::High, Priority::Low, Priority::High] {
            version = write.ticket(id, priority(to, Some(version)), &actor).await.unwrap();
        }
        let parsed = |rows: Vec<(String, String)>| -> Vec<(serde_json::Value, serde_json::Value)> {
            rows.iter().map(|(p, m)| (serde_json::from_str(p).unwrap(), serde_json::from_str(m).unwrap())).collect()
        };
        let before = parsed(sqlx::query_as(EVENTS).fetch_all(pool).await.unwrap());
        let snapshot = parsed(sqlx::query_as(SNAPSHOTS).fetch_all(pool).await.unwrap());
        assert_eq!(snapshot.len(), 1, "the updates left a snapshot");

        db.migrate().await.unwrap();

        let types: Vec<String> = sqlx::query_scalar(TYPES).fetch_all(pool).await.unwrap();
        assert_eq!(types, ["json", "json", "json"]);
        assert_eq!(parsed(sqlx::query_as(EVENTS).fetch_all(pool).await.unwrap()), before);
        assert_eq!(before.len(), 4);
        assert_eq!(parsed(sqlx::query_as(SNAPSHOTS).fetch_all(pool).await.unwrap()), snapshot);
        let fresh = WriteSide::new(db.clone());
        let stale = fresh.ticket(id, priority(Priority::Medium, Some(version - 1)), &actor).await;
        assert!(
            matches!(stale, Err(WriteError::Rejected(TicketError::VersionConflict { actual, .. })) if actual == version)
        );
        assert_eq!(fresh.ticket(id, priority(Priority::Medium, Some(version)), &actor).await.unwrap(), version + 1);
    })
    .await;
}

mod idempotency;
