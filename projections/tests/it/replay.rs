//! The read models are a function of the event stream: a restarted
//! projector resumes where it stopped, and a rebuild from zero gives the
//! same rows.

use commands::db::Db;
use domain::account::AccountCommand;
use domain::ticket::{AssigneeChange, TicketCommand, TicketUpdate};
use domain::values::{Priority, Role, Status};
use projections::read::{HistoryRow, TicketParts, TicketQuery, HISTORY_WITH_ROW};
use projections::views::ERASED;

use crate::fixture::{self, admin, App};

/// A history touching every kind of event; returns nothing, the store holds it.
async fn write_every_kind_of_event(app: &App) {
    let reporter = app.register("Owner@Example.com", Role::Employee).await;
    let helper = app.register("helper@example.com", Role::Employee).await;
    let account = |command| async { app.write.account(helper, command, &admin()).await.expect("account command") };
    account(AccountCommand::ChangeRole { to: Role::Admin }).await;
    account(AccountCommand::ChangePassword { password_hash: "$argon2id$v=19$new".into() }).await;
    account(AccountCommand::Disable).await;
    account(AccountCommand::Enable).await;

    let printer =
        fixture::open_ticket_with_evidence(&app.write, &app.keys, reporter, "Printer on fire", &["smoke.png"]).await;
    let vpn = app.open_ticket(reporter, "VPN drops").await;
    app.update(
        printer,
        TicketUpdate { status: Some(Status::InProgress), priority: Some(Priority::High), ..Default::default() },
    )
    .await;
    app.update(printer, TicketUpdate { assignee: Some(AssigneeChange::Assign(helper)), ..Default::default() }).await;
    let notes = fixture::seal_notes(&app.keys, printer, "Call facilities first").await;
    app.update(printer, TicketUpdate { confidential_notes: Some(notes), ..Default::default() }).await;
    app.update(printer, TicketUpdate { assignee: Some(AssigneeChange::Clear), ..Default::default() }).await;
    app.update(printer, TicketUpdate { status: Some(Status::Resolved), ..Default::default() }).await;

    let key = app.keys.get(vpn).await.unwrap().unwrap();
    let attachment = TicketCommand::AddAttachment(fixture::evidence(&key, vpn, "screenshot.png"));
    app.write.ticket(vpn, attachment, &admin()).await.expect("attachment added");
    app.write
        .ticket(vpn, TicketCommand::Delete { reason: None, expected_version: Some(2) }, &admin())
        .await
        .expect("ticket deleted");
}

async fn resumes_after_restart(db: Db) {
    let app = App::new(db);
    let reporter = app.register("reporter@example.com", Role::Employee).await;
    let ticket = app.open_ticket(reporter, "Laptop will not boot").await;
    app.update(ticket, TicketUpdate { priority: Some(Priority::High), ..Default::default() }).await;

    let first = app.another_projector();
    assert_eq!(app.settle_with(&first).await, 3);
    drop(first);
    let seen = app.checkpoint().await.expect("checkpoint stored");

    write_every_kind_of_event(&app).await;
    app.update(ticket, TicketUpdate { status: Some(Status::Resolved), ..Default::default() }).await;
    let written_since = fixture::event_total(&app.db).await - 3;

    let restarted = app.another_projector();
    let applied = app.settle_with(&restarted).await;
    assert_eq!(applied as i64, written_since, "exactly the events written since the checkpoint");
    assert!(app.checkpoint().await.unwrap() > seen);
    assert_eq!(restarted.catch_up().await.unwrap(), 0, "nothing is applied twice");
    app.assert_read_models_match_events().await;
    let resumed = app.snapshot().await;

    // One more restart, with nothing new: still nothing to do, nothing changed.
    assert_eq!(app.another_projector().catch_up().await.unwrap(), 0);
    assert_eq!(app.snapshot().await, resumed);
}
test_support::store_test!(resumes_after_restart);

async fn rebuild_reproduces_read_models(db: Db) {
    let app = App::new(db);
    write_every_kind_of_event(&app).await;
    let total = app.settle().await;
    assert_eq!(total as i64, app.assert_read_models_match_events().await);
    let before = app.snapshot().await;
    assert_eq!((before.tickets.len(), before.users.len()), (2, 2));
    assert_eq!(before.history.len(), 11, "history: {:#?}", before.history);
    assert_eq!(before.attachments.len(), 2, "attachments: {:#?}", before.attachments);

    // A rebuild writes its rows another way (COPY on PostgreSQL): the
    // same rows, and the same searchable text, which snapshots leave out.
    let rebuilt = app.projector.rebuild().await.unwrap() + app.settle().await;
    assert_eq!(rebuilt, total, "every event projected again");
    assert_eq!(app.snapshot().await, before);
    let search = TicketQuery { search: Some("ON FIRE".into()), limit: 10, ..TicketQuery::default() };
    let found = app.read.tickets(&search).await.unwrap();
    assert_eq!(found.iter().map(|t| t.title.as_str()).collect::<Vec<_>>(), ["Printer on fire"]);
    assert_eq!(app.projector.catch_up().await.unwrap(), 0);
}
test_support::store_test!(rebuild_reproduces_read_models);

// A rebuild reads each next batch while applying the one before: over
// more than one batch nothing is skipped or applied twice.
async fn rebuild_over_several_batches(db: Db) {
    let app = App::new(db);
    let reporter = app.register("many@example.com", Role::Employee).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (write, keys) = (app.write.clone(), app.keys.clone());
        tasks.spawn(async move {
            let id = fixture::open_ticket(&write, &keys, reporter, &format!("ticket {n}")).await;
            for step in 0..510u32 {
                let priority = if step % 2 == 0 { Priority::High } else { Priority::Low };
                let update = TicketUpdate { priority: Some(priority), ..Default::default() };
                write.ticket(id, TicketCommand::Update(update), &admin()).await.expect("update");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer");
    }
    let total = app.settle().await;
    assert_eq!(total, 1 + 8 * 511);
    assert!(total > projections::projector::BATCH_LEN, "more than one batch");
    let before = app.snapshot().await;
    let rebuilt = app.projector.rebuild().await.unwrap() + app.settle().await;
    assert_eq!(rebuilt, total, "every event projected again, once");
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.assert_read_models_match_events().await, i64::try_from(total).unwrap());
}
test_support::store_test!(rebuild_over_several_batches);

// Crypto-shredding (DESIGN §6): once a ticket's data key is destroyed, a
// rebuild can no longer open its text and shows it erased, while who did
// what and when stays; other tickets keep theirs. The batch's keys are
// read together, the destroyed one simply absent.
async fn a_shredded_ticket_rebuilds_as_erased(db: Db) {
    let app = App::new(db);
    let reporter = app.register("reporter@example.com", Role::Employee).await;
    let kept = app.open_ticket(reporter, "Monitor flickers").await;
    let shredded =
        fixture::open_ticket_with_evidence(&app.write, &app.keys, reporter, "Payroll export", &["salaries.png"]).await;
    app.update(shredded, TicketUpdate { status: Some(Status::InProgress), ..Default::default() }).await;
    app.settle().await;
    let history = format!("{:?}", app.read.history(shredded.as_uuid()).await.unwrap());

    commands::on_db!(&app.db, pool => sqlx::query("DELETE FROM data_keys WHERE ticket_id = $1")
        .bind(shredded.as_uuid()).execute(pool).await.map(|_| ()))
    .expect("key destroyed");
    let keys = app.keys.get_many(&[kept.as_uuid(), shredded.as_uuid()]).await.unwrap();
    assert_eq!(keys.keys().collect::<Vec<_>>(), [&kept.as_uuid()], "only the kept ticket's key is left");

    app.projector.rebuild().await.unwrap();
    app.settle().await;
    let erased = app.read.ticket(shredded.as_uuid()).await.unwrap().expect("the ticket is still there");
    assert_eq!((erased.title.as_str(), erased.description.as_str()), (ERASED, ERASED));
    assert_eq!(erased.status, "IN_PROGRESS");
    let attachments = app.read.attachments(shredded.as_uuid()).await.unwrap();
    assert_eq!(attachments.iter().map(|a| a.filename.as_str()).collect::<Vec<_>>(), [ERASED]);
    // Who did what, and when, stays; the file's name was text too.
    let after = format!("{:?}", app.read.history(shredded.as_uuid()).await.unwrap());
    assert_eq!(after, history.replace("salaries.png", ERASED));
    let search = TicketQuery { search: Some("payroll".into()), limit: 10, ..TicketQuery::default() };
    assert!(app.read.tickets(&search).await.unwrap().is_empty(), "its text is not searchable either");
    let intact = app.read.ticket(kept.as_uuid()).await.unwrap().expect("the other ticket");
    assert_eq!(intact.title, "Monitor flickers");
}
test_support::store_test!(a_shredded_ticket_rebuilds_as_erased);

// A detail reads a ticket's row and parts together (on PostgreSQL in one
// statement, the parts as JSON): the same rows as read one by one, for
// every kind of event; a history of over 64 events is left to the caller;
// a list leaves out only the columns it is asked to;
// nothing for a ticket that does not exist. A page of a history read in SQL
// is the page cut from the whole, with or without the notes' changes.
async fn a_ticket_in_full_matches_its_parts_read_apart(db: Db) {
    let app = App::new(db);
    write_every_kind_of_event(&app).await;
    let reporter = app.register("long@example.com", Role::Employee).await;
    let long = fixture::open_ticket_with_evidence(&app.write, &app.keys, reporter, "Long one", &["a.png"]).await;
    for step in 0..70 {
        let priority = if step % 2 == 0 { Priority::High } else { Priority::Low };
        app.update(long, TicketUpdate { priority: Some(priority), ..Default::default() }).await;
    }
    app.settle().await;
    let query = TicketQuery { include_deleted: true, limit: 10, ..TicketQuery::default() };
    let tickets = app.read.tickets(&query).await.unwrap();
    assert_eq!(tickets.len(), 3);
    assert!(tickets.iter().any(|t| t.version > 64) && tickets.iter().any(|t| t.version <= 64));
    // A list leaves out the description or the sealed notes when asked to,
    // and nothing else.
    assert!(tickets.iter().all(|t| !t.description.is_empty()) && tickets.iter().any(|t| t.notes_envelope.is_some()));
    for (omit_description, omit_notes) in [(true, false), (false, true), (true, true)] {
        let lean = app.read.tickets(&TicketQuery { omit_description, omit_notes, ..query.clone() }).await.unwrap();
        let expected: Vec<_> = tickets
            .iter()
            .cloned()
            .map(|mut ticket| {
                if omit_description {
                    ticket.description.clear();
                }
                if omit_notes {
                    ticket.notes_envelope = None;
                }
                ticket
            })
            .collect();
        assert_eq!(lean, expected, "omit description {omit_description}, notes {omit_notes}");
    }
    let mut notes_changed = false;
    for ticket in tickets {
        let both = TicketParts { history: true, attachments: true };
        let full = app.read.ticket_with(ticket.id, both).await.unwrap().expect("ticket found");
        assert_eq!(full.row, ticket);
        let history = app.read.history(ticket.id).await.unwrap();
        assert!(!history.is_empty());
        notes_changed |= history.iter().any(|row| !row.seen_by(false));
        let debug = |rows: &[HistoryRow]| format!("{rows:?}");
        for (after, limit, admin) in [(0, Some(1), true), (0, None, false), (2, Some(3), true), (5, Some(100), false)] {
            let page = app.read.history_page(ticket.id, after, limit, admin).await.unwrap();
            let cut: Vec<HistoryRow> = history
                .iter()
                .filter(|row| row.sequence > after && row.seen_by(admin))
                .take(limit.unwrap_or(usize::MAX))
                .cloned()
                .collect();
            assert_eq!(debug(&page), debug(&cut), "after {after}, limit {limit:?}, admin {admin}");
        }
        if ticket.version <= HISTORY_WITH_ROW {
            assert_eq!(format!("{:?}", full.history), format!("{:?}", Some(history)));
        } else {
            assert!(full.history.is_none(), "a long history is left to the caller");
        }
        assert_eq!(full.attachments, app.read.attachments(ticket.id).await.unwrap());
        assert!(!full.attachments.is_empty(), "every ticket holds evidence");
        let bare = app.read.ticket_with(ticket.id, TicketParts::default()).await.unwrap().expect("ticket found");
        assert!(bare.history.is_none() && bare.attachments.is_empty());
        assert_eq!(bare.row, ticket);
    }
    assert!(notes_changed, "some history holds a change of the notes, which only admins see");
    let missing = uuid::Uuid::new_v4();
    assert!(app.read.ticket_with(missing, TicketParts { history: true, attachments: true }).await.unwrap().is_none());
}
test_support::store_test!(a_ticket_in_full_matches_its_parts_read_apart);
