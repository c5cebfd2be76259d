//! Many writers race on shared tickets while the projector runs beside
//! them: every command lands (retries absorb the races) and every event is
//! projected exactly once.

use std::time::Instant;

use commands::db::Db;
use domain::ticket::{AssigneeChange, TicketCommand, TicketUpdate};
use domain::values::{Priority, Role, Status, TicketId, UserId};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::fixture::{self, App};

const WRITERS: usize = 8;
const UPDATES_PER_WRITER: usize = 25;
/// Four writers hammer each shared ticket back to back, and each shared
/// ticket passes a snapshot (every 50 events) while being fought over.
const SHARED_TICKETS: usize = 2;

/// The `i`-th change of writer `w`: always valid from any state (statuses
/// only move between OPEN and IN_PROGRESS), so only races can refuse it.
/// Its notes are new every time, so it always appends at least one event.
fn change(w: usize, i: usize, people: [UserId; 2]) -> TicketUpdate {
    let priorities = [Priority::Low, Priority::Medium, Priority::High];
    match i % 4 {
        0 => TicketUpdate { priority: Some(priorities[(w + i) % 3]), ..Default::default() },
        1 => TicketUpdate { status: Some([Status::InProgress, Status::Open][(w + i) % 2]), ..Default::default() },
        2 => TicketUpdate {
            assignee: Some(match (w + i) % 3 {
                0 => AssigneeChange::Clear,
                n => AssigneeChange::Assign(people[n - 1]),
            }),
            ..Default::default()
        },
        _ => TicketUpdate {
            priority: Some(priorities[(w + i + 1) % 3]),
            status: Some(if i % 8 == 3 { Status::Open } else { Status::InProgress }),
            ..Default::default()
        },
    }
}

async fn many_concurrent_writers(db: Db) {
    let app = App::new(db);
    let reporter = app.register("reporter@example.com", Role::Employee).await;
    let helper = app.register("helper@example.com", Role::Admin).await;
    let mut shared = Vec::new();
    for n in 0..SHARED_TICKETS {
        shared.push(app.open_ticket(reporter, &format!("Shared problem {n}")).await);
    }

    let (stop, stopped) = watch::channel(false);
    let background = tokio::spawn(app.another_projector().run(stopped));

    let started = Instant::now();
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let (write, keys, shared) = (app.write.clone(), app.keys.clone(), shared.clone());
        writers.spawn(async move {
            let own = fixture::open_ticket(&write, &keys, reporter, &format!("Writer {w}'s problem")).await;
            let mut errors = Vec::new();
            for i in 0..UPDATES_PER_WRITER {
                // Which shared ticket must not decide which change it gets.
                let target: TicketId = if i % 2 == 0 { shared[(7 * w + i / 2) % SHARED_TICKETS] } else { own };
                let mut update = change(w, i, [reporter, helper]);
                update.confidential_notes = Some(fixture::seal_notes(&keys, target, &format!("note {w}/{i}")).await);
                if let Err(error) = write.ticket(target, TicketCommand::Update(update), &fixture::admin()).await {
                    errors.push(format!("writer {w}, update {i} on {target}: {error:?}"));
                }
            }
            errors
        });
    }
    let mut errors = Vec::new();
    while let Some(result) = writers.join_next().await {
        errors.extend(result.expect("writer task finished"));
    }
    let writing = started.elapsed();
    assert!(errors.is_empty(), "write side refused commands: {errors:#?}");

    // The running projector gets everything on its own; a fresh one finds nothing left.
    app.wait_until_projected().await;
    stop.send_replace(true);
    background.await.expect("projector stopped");
    assert_eq!(app.settle().await, 0);

    let events = app.assert_read_models_match_events().await;
    let tickets = fixture::event_counts(&app.db, "Ticket").await;
    assert_eq!(tickets.len(), SHARED_TICKETS + WRITERS);
    let shared_counts: Vec<i64> =
        tickets.iter().filter(|(id, _)| shared.iter().any(|s| s.as_uuid() == *id)).map(|(_, count)| *count).collect();
    let on_shared: i64 = shared_counts.iter().sum();
    let updates_on_shared = (WRITERS * UPDATES_PER_WRITER / 2) as i64;
    assert!(on_shared > updates_on_shared, "every update on a shared ticket appended: {on_shared}");
    assert!(shared_counts.iter().all(|count| *count > 50), "each shared ticket passed a snapshot: {shared_counts:?}");
    eprintln!("{events} events from {WRITERS} writers in {writing:?}; shared tickets got {shared_counts:?}");
}
test_support::store_test!(many_concurrent_writers);
