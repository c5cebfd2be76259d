//! The write side against real stores: snapshots must not change decisions.

use commands::db::Db;
use commands::keys::KeyRing;
use commands::write::{Actor, WriteError};
use domain::sealed::SealedField;
use domain::ticket::{TicketCommand, TicketError, TicketUpdate};
use domain::values::{Priority, TicketId, UserId};
use uuid::Uuid;

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

// Snapshots are taken every 50 events; a version computed from a snapshot
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
    let stale = write.ticket(id, priority(Priority::Medium, Some(version - 1)), &actor).await;
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
