//! A mixed write load: several clients, each an employee opening tickets
//! under unique titles and attaching files to them while the admin changes
//! their priority, each filing every answer in the shared ledger. A client
//! changes a ticket's priority only while it knows the current one, so
//! every acknowledged update is a real change with an event of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::client::{Answer, Api};
use crate::common::{File, Multipart};
use crate::ledger::{Acked, Ledger};
use crate::support::UPDATE;

const CREATE: &str = "mutation($t: String!) { createTicket(input: {title: $t, description: \"Fault trial.\"}) { id } }";
const PRIORITIES: [&str; 3] = ["LOW", "MEDIUM", "HIGH"];
/// A pause after a write that failed, so a dead server or a missing
/// database is not hammered in a tight loop.
const BACKOFF: Duration = Duration::from_millis(50);

/// A ticket a client opened and whether it knows the ticket's priority.
#[derive(Debug, Clone)]
struct Owned {
    id: String,
    priority: Option<&'static str>,
}

/// One client: its employee's token, its tickets, its count of requests.
#[derive(Debug, Clone)]
struct Writer {
    name: String,
    token: String,
    tickets: Vec<Owned>,
    step: usize,
}

/// The clients and what they have been told, across rounds.
pub struct Load {
    pub admin: String,
    writers: Vec<Writer>,
    pub ledger: Arc<Mutex<Ledger>>,
}

impl Load {
    /// Signs the admin in and registers `clients` employees.
    pub async fn new(api: &Api, clients: usize) -> Self {
        let admin = api.login(crate::process::ADMIN_EMAIL, crate::process::ADMIN_PASSWORD).await;
        let mut writers = Vec::new();
        for i in 0..clients {
            let name = format!("c{i}-{}", Uuid::new_v4().simple());
            let token = api.register(&format!("{name}@example.com")).await;
            writers.push(Writer { name, token, tickets: Vec::new(), step: 0 });
        }
        Self { admin, writers, ledger: Arc::default() }
    }

    /// Starts every client against `api`; they write until `Running::stop`.
    pub fn start(&mut self, api: &Api) -> Running {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for mut writer in std::mem::take(&mut self.writers) {
            let (api, admin, ledger, stopped) = (api.clone(), self.admin.clone(), self.ledger.clone(), stopped.clone());
            tasks.spawn(async move {
                while !*stopped.borrow() {
                    writer.step(&api, &admin, &ledger).await;
                }
                writer
            });
        }
        Running { stop, tasks }
    }

    /// The ledger's acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.ledger.lock().expect("the ledger").acked.len()
    }

    /// Gives back the clients of a stopped run.
    fn rejoin(&mut self, writers: Vec<Writer>) {
        self.writers = writers;
    }
}

/// Clients writing in the background.
pub struct Running {
    stop: watch::Sender<bool>,
    tasks: JoinSet<Writer>,
}

impl Running {
    /// Stops the clients after their current request and hands them back.
    pub async fn stop(self, load: &mut Load) {
        let _ = self.stop.send(true);
        let writers = self.tasks.join_all().await;
        load.rejoin(writers);
    }
}

impl Writer {
    /// One write: open a ticket, change a known ticket's priority, or
    /// attach a file, in turn.
    async fn step(&mut self, api: &Api, admin: &str, ledger: &Mutex<Ledger>) {
        self.step += 1;
        let known = self.tickets.iter().rposition(|t| t.priority.is_some());
        let answer = match (self.step % 4, known) {
            (1 | 2, Some(index)) => self.update(api, admin, index, ledger).await,
            (3, Some(_)) => self.attach(api, ledger).await,
            _ => self.create(api, ledger).await,
        };
        let failed = !matches!(answer, Answer::Ok(_));
        ledger.lock().expect("the ledger").answered(&answer);
        if failed {
            tokio::time::sleep(BACKOFF).await;
        }
    }

    async fn create(&mut self, api: &Api, ledger: &Mutex<Ledger>) -> Answer {
        let title = format!("{} #{}", self.name, self.step);
        ledger.lock().expect("the ledger").titles.push(title.clone());
        let answer = api.gql(Some(&self.token), CREATE, json!({ "t": title })).await;
        if let Answer::Ok(data) = &answer {
            let id = data["createTicket"]["id"].as_str().expect("an id").to_owned();
            ledger.lock().expect("the ledger").acked.push(Acked::Created { title, id: id.clone() });
            self.tickets.push(Owned { id, priority: Some("MEDIUM") });
        }
        answer
    }

    async fn update(&mut self, api: &Api, admin: &str, index: usize, ledger: &Mutex<Ledger>) -> Answer {
        let ticket = &mut self.tickets[index];
        let current = ticket.priority.take().expect("a known priority");
        let to = PRIORITIES[(PRIORITIES.iter().position(|p| *p == current).expect("a priority") + 1) % 3];
        *ledger.lock().expect("the ledger").sent_to.entry(ticket.id.clone()).or_default() += 1;
        let answer = api.gql(Some(admin), UPDATE, json!({ "id": ticket.id, "input": { "priority": to } })).await;
        if let Answer::Ok(data) = &answer {
            let version = data["updateTicket"]["version"].as_i64().expect("a version");
            let write = Acked::Updated { ticket: ticket.id.clone(), version, to: to.to_owned() };
            ledger.lock().expect("the ledger").acked.push(write);
            ticket.priority = Some(to);
        }
        answer
    }

    async fn attach(&mut self, api: &Api, ledger: &Mutex<Ledger>) -> Answer {
        let ticket = self.tickets[self.step % self.tickets.len()].id.clone();
        let file = unique_pdf(&format!("{} #{}", self.name, self.step));
        *ledger.lock().expect("the ledger").sent_to.entry(ticket.clone()).or_default() += 1;
        let answer = api.multipart(Some(&self.token), Multipart::add_attachment(&ticket, &file)).await;
        if let Answer::Ok(data) = &answer {
            let attachment = &data["addAttachment"];
            assert_eq!(attachment["sha256"], file.sha256(), "the answer names the file sent: {attachment}");
            let id = attachment["id"].as_str().expect("an attachment id").to_owned();
            ledger.lock().expect("the ledger").acked.push(Acked::Attached { ticket, id, sha256: file.sha256() });
        }
        answer
    }
}

/// A small PDF no other upload shares, so each is a blob of its own.
pub fn unique_pdf(marker: &str) -> File {
    let mut bytes = crate::common::pdf();
    bytes.extend_from_slice(format!("% {marker}\n").as_bytes());
    File::new("evidence.pdf", "application/pdf", bytes)
}
