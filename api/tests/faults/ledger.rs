//! What the clients were told: every write attempted, which were
//! acknowledged, and, after the faults, the check that each acknowledged
//! write is in the store exactly once and that nothing was applied twice.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::client::{Answer, Api};

/// A write the server acknowledged.
#[derive(Debug, Clone)]
pub enum Acked {
    /// A ticket opened under a title no other write used.
    Created { title: String, id: String },
    /// `updateTicket` set the priority to `to`, answering `version`.
    Updated { ticket: String, version: i64, to: String },
    /// `addAttachment` stored a file with this digest.
    Attached { ticket: String, id: String, sha256: String },
}

/// Every write of a trial and what became of it.
#[derive(Debug, Default)]
pub struct Ledger {
    pub acked: Vec<Acked>,
    /// Every title a create was sent with, acknowledged or not.
    pub titles: Vec<String>,
    /// Writes sent per ticket (updates and attachments), acknowledged or not.
    pub sent_to: HashMap<String, i64>,
    /// Refusals by code.
    pub refused: BTreeMap<String, usize>,
    /// The first status and message seen with each code.
    pub samples: BTreeMap<String, String>,
    pub unanswered: usize,
    /// Why the first unanswered request got no answer.
    pub first_unanswered: Option<String>,
}

impl Ledger {
    /// Files an answer to a write; panics on one that is not GraphQL.
    pub fn answered(&mut self, answer: &Answer) {
        match answer {
            Answer::Ok(_) => {}
            Answer::Refused { status, code, message } => {
                *self.refused.entry(code.clone()).or_default() += 1;
                self.samples.entry(code.clone()).or_insert_with(|| format!("{status}: {message}"));
            }
            Answer::Unanswered(error) => {
                self.unanswered += 1;
                self.first_unanswered.get_or_insert_with(|| error.clone());
            }
            Answer::Malformed { status, body } => panic!("an answer that is not GraphQL ({status}): {body}"),
        }
    }

    pub fn attempted(&self) -> usize {
        self.titles.len() + self.sent_to.values().map(|n| usize::try_from(*n).unwrap_or_default()).sum::<usize>()
    }

    /// Panics unless every refusal carried one of `codes`.
    #[track_caller]
    pub fn assert_refusals_within(&self, codes: &[&str]) {
        for code in self.refused.keys() {
            assert!(codes.contains(&code.as_str()), "a write was refused with {code}: {:?}", self.samples);
        }
    }

    /// Prints a trial's figures (shown with `--nocapture`): one fault per round.
    pub fn report(&self, trial: &str, rounds: usize, found: &Found, rows: usize, since: Instant) {
        println!(
            "{trial}: {rounds} rounds, {rounds} faults; {} writes sent, {} acknowledged, {found}; refused {:?} \
             (first of each: {:?}), {} unanswered; {rows} read-model rows equal to a rebuild; {:.1?}",
            self.attempted(),
            self.acked.len(),
            self.refused,
            self.samples,
            self.unanswered,
            since.elapsed()
        );
    }

    /// Reads everything back through `api` as the admin and checks it: each
    /// acknowledged create exists once under its title, no title twice,
    /// each acknowledged update at its version in the history, each
    /// acknowledged file attached once and downloadable with its digest,
    /// and no ticket with more changes than were sent to it.
    pub async fn verify(&self, api: &Api, admin: &str) -> Found {
        let tickets = all_tickets(api, admin).await;
        let mut by_title: HashMap<&str, Vec<&str>> = HashMap::new();
        for (id, title) in &tickets {
            by_title.entry(title.as_str()).or_default().push(id.as_str());
        }
        for title in &self.titles {
            let found = by_title.get(title.as_str()).map_or(0, Vec::len);
            assert!(found <= 1, "the create titled {title:?} was applied {found} times");
        }
        let mut found = Found::default();
        let mut details: HashMap<String, Value> = HashMap::new();
        for write in &self.acked {
            match write {
                Acked::Created { title, id } => {
                    let ids = by_title.get(title.as_str()).cloned().unwrap_or_default();
                    assert_eq!(ids, [id.as_str()], "the acknowledged create {title:?} ({id}) is found exactly once");
                    found.created += 1;
                }
                Acked::Updated { ticket, version, to } => {
                    let detail = detail(api, admin, ticket, &mut details).await;
                    let entries: Vec<&Value> = detail["history"]
                        .as_array()
                        .expect("a history")
                        .iter()
                        .filter(|e| e["sequence"] == json!(version))
                        .collect();
                    assert_eq!(entries.len(), 1, "update {ticket}@{version} is in the history once: {detail}");
                    let entry = entries[0];
                    assert_eq!(entry["field"], "priority", "update {ticket}@{version}: {entry}");
                    assert_eq!(entry["to"], json!(to), "update {ticket}@{version}: {entry}");
                    found.updated += 1;
                }
                Acked::Attached { ticket, id, sha256 } => {
                    let detail = detail(api, admin, ticket, &mut details).await;
                    let matching = detail["attachments"]
                        .as_array()
                        .expect("attachments")
                        .iter()
                        .filter(|a| a["id"] == json!(id))
                        .count();
                    assert_eq!(matching, 1, "attachment {id} is on ticket {ticket} once: {detail}");
                    let (status, bytes) =
                        api.get(&format!("/attachments/{id}"), Some(admin)).await.expect("the download answers");
                    assert!(status.is_success(), "attachment {id} downloads: {status}");
                    assert_eq!(&hex::encode(Sha256::digest(&bytes)), sha256, "attachment {id}'s bytes are intact");
                    found.attached += 1;
                }
            }
        }
        // A ticket never holds more changes than were sent to it: none was
        // applied twice.
        for (ticket, detail) in &details {
            let version = detail["version"].as_i64().expect("a version");
            let sent = self.sent_to.get(ticket).copied().unwrap_or_default();
            assert!(version <= 1 + sent, "ticket {ticket} is at version {version} after {sent} writes to it");
        }
        found.tickets = tickets.len();
        found
    }
}

/// How many acknowledged writes the check found, by kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Found {
    pub created: usize,
    pub updated: usize,
    pub attached: usize,
    /// Tickets in the store, acknowledged or not.
    pub tickets: usize,
}

impl Found {
    pub fn total(&self) -> usize {
        self.created + self.updated + self.attached
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} found ({} creates, {} updates, {} files; {} tickets stored)",
            self.total(),
            self.created,
            self.updated,
            self.attached,
            self.tickets
        )
    }
}

const PAGE: &str = "query($after: String) { tickets(first: 100, after: $after) { \
    edges { node { id title } } pageInfo { hasNextPage endCursor } } }";

/// Every ticket's id and title, as the admin lists them.
async fn all_tickets(api: &Api, admin: &str) -> Vec<(String, String)> {
    let mut tickets = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = api.gql(Some(admin), PAGE, json!({ "after": after })).await.data();
        let page = &page["tickets"];
        for edge in page["edges"].as_array().expect("edges") {
            let node = &edge["node"];
            tickets
                .push((node["id"].as_str().expect("id").to_owned(), node["title"].as_str().expect("title").to_owned()));
        }
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            return tickets;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

const DETAIL: &str = "query($id: ID!) { ticket(id: $id) { id version attachments { id sha256 } \
    history { sequence action field to } } }";

/// One ticket's version, files and history, read once per check.
async fn detail(api: &Api, admin: &str, id: &str, cache: &mut HashMap<String, Value>) -> Value {
    if let Some(found) = cache.get(id) {
        return found.clone();
    }
    let data = api.gql(Some(admin), DETAIL, json!({ "id": id })).await.data();
    let ticket = data["ticket"].clone();
    assert!(ticket.is_object(), "ticket {id} with acknowledged changes is readable: {data}");
    cache.insert(id.to_owned(), ticket.clone());
    ticket
}
