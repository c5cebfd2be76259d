//! The disk under the store or the blobs fills up: on SQLite the whole
//! data folder (database and blobs) sits on a small tmpfs, on PostgreSQL
//! the blobs do. While it is full, writes that need space fail cleanly
//! with a code, the server stays up and what was written stays readable;
//! once space returns, writing resumes by itself; afterwards nothing is
//! corrupted (`PRAGMA integrity_check`, every acknowledged write found, the
//! read models equal to a rebuild).

use std::time::{Duration, Instant};

use commands::db::Db;
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::{Store, TestDb};

use crate::client::{Answer, Api};
use crate::common::Multipart;
use crate::disk::SmallDisk;
use crate::ledger::{Acked, Ledger};
use crate::load::unique_pdf;
use crate::process::{Config, Server, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::read_models::assert_equal_to_rebuild;
use crate::support::both_stores;

/// Small enough to fill in a moment, large enough for the store to start.
const DISK_MIB: u32 = 8;
/// Writes tried on the full disk at most.
const TRIES_WHEN_FULL: usize = 200;
/// Failures of each kind that prove the disk is full.
const FAILURES_WANTED: usize = 3;
/// How long writing may take to resume once space is back.
const RESUME: Duration = Duration::from_secs(60);

const CREATE: &str = "mutation($t: String!, $d: String!) { createTicket(input: {title: $t, description: $d}) { id } }";
const DETAIL: &str = "query($id: ID!) { ticket(id: $id) { id title description version attachments { id sha256 } } }";

async fn disk_fills_up(store: Store) {
    let started = Instant::now();
    let disk = SmallDisk::mount(DISK_MIB);
    let logs = tempfile::tempdir().expect("a temp folder");
    let test_db = match store {
        Store::Postgres => Some(TestDb::postgres().await),
        Store::Sqlite => None,
    };
    let database_url = test_db
        .as_ref()
        .map_or_else(|| format!("sqlite://{}", disk.path().join("tickets.db").display()), |db| db.url.clone());
    let config = Config::new(database_url.clone(), disk.path(), logs.path());
    let mut server = Server::start(&config).await;
    let api = Api::new(&server.base);
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let employee = api.register("disk-full@example.com").await;
    let mut ledger = Ledger::default();
    let mut writer = Writer { api: &api, token: &employee, ledger: &mut ledger, count: 0 };

    // What was there before the disk filled.
    let mut before = Vec::new();
    for _ in 0..3 {
        let id = writer.create().await.expect("a create on a disk with room");
        writer.attach(&id).await.expect("an upload on a disk with room");
        before.push(detail(&api, &admin, &id).await);
    }

    let rounds = crate::rounds(2);
    let mut figures = Vec::new();
    for _ in 0..rounds {
        figures.push(full_then_freed(&disk, &mut writer, &mut server, &admin, &before, store).await);
    }

    assert!(server.ready_within(RESUME).await, "ready once space returned:\n{}", server.log_tail());
    let found = ledger.verify(&api, &admin).await;
    assert_eq!(found.total(), ledger.acked.len());
    server.kill().await;
    let db = match &test_db {
        Some(test_db) => test_db.db.clone(),
        None => Db::connect(&database_url).await.expect("the SQLite store opens"),
    };
    if let Db::Sqlite(pool) = &db {
        let verdict: Vec<String> =
            sqlx::query_scalar("PRAGMA integrity_check").fetch_all(pool).await.expect("integrity_check runs");
        assert_eq!(verdict, ["ok"], "the SQLite file is intact");
    }
    let rows = assert_equal_to_rebuild(&db, &config).await;

    for round in &figures {
        println!("disk full ({store:?}): {round}");
    }
    ledger.report(&format!("disk full ({store:?})"), rounds, &found, rows, started);
    db.close().await;
    if let Some(test_db) = test_db {
        test_db.cleanup().await;
    }
}

both_stores!(disk_fills_up);

/// What one filling of the disk did.
struct Round {
    filled: u64,
    tried: usize,
    failed_creates: usize,
    failed_uploads: usize,
    resumed: Duration,
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "filled with {} bytes; {} rounds of writes on the full disk, {} creates and {} uploads refused; \
             writing resumed {:.1?} after freeing",
            self.filled, self.tried, self.failed_creates, self.failed_uploads, self.resumed
        )
    }
}

/// Fills the disk, writes on it, checks what was there, frees it and
/// waits until writing works again.
async fn full_then_freed(
    disk: &SmallDisk,
    writer: &mut Writer<'_>,
    server: &mut Server,
    admin: &str,
    before: &[Value],
    store: Store,
) -> Round {
    let api = writer.api;
    let filled = disk.fill();
    let refused_before = writer.ledger.refused.values().sum::<usize>();
    let (mut failed_creates, mut failed_uploads, mut tried) = (0, 0, 0);
    while tried < TRIES_WHEN_FULL
        && (failed_uploads < FAILURES_WANTED || (store == Store::Sqlite && failed_creates < FAILURES_WANTED))
    {
        tried += 1;
        if writer.create().await.is_none() {
            failed_creates += 1;
        }
        if writer.attach(before[0]["id"].as_str().expect("an id")).await.is_none() {
            failed_uploads += 1;
        }
    }
    let refused = writer.ledger.refused.values().sum::<usize>() - refused_before;
    assert_eq!(refused, failed_creates + failed_uploads, "every failed write was refused with a code");
    assert!(failed_uploads >= FAILURES_WANTED, "uploads kept succeeding on a full disk");
    if store == Store::Sqlite {
        assert!(failed_creates >= FAILURES_WANTED, "creates kept succeeding on a full disk");
    }
    assert_eq!(writer.ledger.unanswered, 0, "every write on the full disk was answered");
    writer.ledger.assert_refusals_within(&["INTERNAL"]);
    assert!(server.alive(), "the server outlived the full disk");
    let (status, _) = api.get("/healthz", None).await.expect("healthz answers");
    assert_eq!(status, StatusCode::OK);
    for ticket in before {
        let id = ticket["id"].as_str().expect("an id");
        assert_eq!(&detail(api, admin, id).await, ticket, "a ticket written before is intact on the full disk");
    }

    disk.free();
    let freed = Instant::now();
    let ticket = loop {
        if let Some(id) = writer.create().await {
            break id;
        }
        assert!(freed.elapsed() < RESUME, "creates did not resume once space returned:\n{}", server.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    while writer.attach(&ticket).await.is_none() {
        assert!(freed.elapsed() < RESUME, "uploads did not resume once space returned:\n{}", server.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Round { filled, tried, failed_creates, failed_uploads, resumed: freed.elapsed() }
}

/// One employee's writes, filed in a ledger.
struct Writer<'a> {
    api: &'a Api,
    token: &'a str,
    ledger: &'a mut Ledger,
    count: usize,
}

impl Writer<'_> {
    /// Opens a ticket with a long description; its id when acknowledged.
    async fn create(&mut self) -> Option<String> {
        self.count += 1;
        let title = format!("disk full #{}", self.count);
        self.ledger.titles.push(title.clone());
        let description = "The disk under the store is filling up. ".repeat(200);
        let answer = self.api.gql(Some(self.token), CREATE, json!({ "t": title, "d": description })).await;
        self.ledger.answered(&answer);
        let Answer::Ok(data) = answer else { return None };
        let id = data["createTicket"]["id"].as_str().expect("an id").to_owned();
        self.ledger.acked.push(Acked::Created { title, id: id.clone() });
        Some(id)
    }

    /// Attaches a 64 KiB file; whether it was acknowledged.
    async fn attach(&mut self, ticket: &str) -> Option<()> {
        self.count += 1;
        let mut file = unique_pdf(&format!("disk full #{}", self.count));
        file.bytes.resize(64 * 1024, b' ');
        *self.ledger.sent_to.entry(ticket.to_owned()).or_default() += 1;
        let answer = self.api.multipart(Some(self.token), Multipart::add_attachment(ticket, &file)).await;
        self.ledger.answered(&answer);
        let Answer::Ok(data) = answer else { return None };
        let id = data["addAttachment"]["id"].as_str().expect("an attachment id").to_owned();
        self.ledger.acked.push(Acked::Attached { ticket: ticket.to_owned(), id, sha256: file.sha256() });
        Some(())
    }
}

/// A ticket as the admin reads it.
async fn detail(api: &Api, admin: &str, id: &str) -> Value {
    api.gql(Some(admin), DETAIL, json!({ "id": id })).await.data()["ticket"].clone()
}
