//! Queries over the read models, for the API. Every function here reads;
//! only the projector writes these tables.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::db::push_id_list;
use commands::db::Db;
use commands::on_reads;
use commands::statements::Statements;
use domain::values::{Priority, Status};
use sqlx::QueryBuilder;
use tokio::sync::watch;
use uuid::Uuid;

use std::sync::Arc;

use crate::by_position::by_position;
use crate::projector::{Checkpoint, Projected};

by_position! {
    /// A row of `tickets`: the columns of `ticket_columns!`, in order.
    #[derive(Debug, Clone, PartialEq)]
    pub struct TicketRow {
        pub id: Uuid,
        pub title: String,
        pub description: String,
        pub priority: String,
        pub priority_rank: i16,
        pub status: String,
        pub reporter_id: Uuid,
        pub assignee_id: Option<Uuid>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        pub version: i64,
        pub notes_envelope: Option<String>,
        pub deleted_at: Option<DateTime<Utc>>,
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub disabled: bool,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub version: i64,
    /// When the account was last disabled, if ever: tokens issued before
    /// it are refused even once it is enabled again.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// The history's `field` of a change to the confidential notes: such
/// entries are admins' business (that the notes changed, never what they
/// say).
pub const NOTES_FIELD: &str = "confidentialNotes";

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct HistoryRow {
    pub sequence: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor_role: Option<String>,
    pub action: String,
    pub field: Option<String>,
    pub from_value: Option<String>,
    pub to_value: Option<String>,
}

impl HistoryRow {
    /// Whether a viewer sees this entry: changes to the confidential notes
    /// only admins do.
    pub fn seen_by(&self, admin: bool) -> bool {
        admin || self.field.as_deref() != Some(NOTES_FIELD)
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Deserialize)]
pub struct AttachmentRow {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: Option<Uuid>,
    pub uploaded_at: DateTime<Utc>,
}

const ATTACHMENT_COLUMNS: &str =
    "SELECT id, ticket_id, filename, content_type, size, sha256, uploaded_by, uploaded_at FROM attachments";

const HISTORY_COLUMNS: &str = "SELECT ticket_id, sequence, at, actor_id, actor_role, action, field, from_value, \
    to_value FROM ticket_history";

/// `columns` (a `SELECT … FROM` of a table with `ticket_id` and `sequence`)
/// for `tickets`, in order.
fn by_tickets<'a, DB>(columns: &str, tickets: &'a [Uuid]) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sql = QueryBuilder::new(columns);
    sql.push(" WHERE ticket_id IN ");
    push_id_list(&mut sql, tickets);
    sql.push(" ORDER BY ticket_id, sequence");
    sql
}

/// What [`ReadModels::ticket_with`] reads besides the row.
#[derive(Debug, Clone, Copy, Default)]
pub struct TicketParts {
    pub history: bool,
    pub attachments: bool,
}

/// A ticket's row with the parts asked for.
#[derive(Debug, Clone)]
pub struct TicketInFull {
    pub row: TicketRow,
    /// `None` when not asked, or when the ticket has more than
    /// [`HISTORY_WITH_ROW`] events: the caller reads such a history with
    /// [`ReadModels::history`] when it can afford to hold it.
    pub history: Option<Vec<HistoryRow>>,
    /// Empty when not asked.
    pub attachments: Vec<AttachmentRow>,
}

/// The most events a ticket may have for its history to come with its row.
pub const HISTORY_WITH_ROW: i64 = 64;

#[derive(sqlx::FromRow)]
struct TicketHistoryRow {
    ticket_id: Uuid,
    #[sqlx(flatten)]
    entry: HistoryRow,
}

/// The orders a ticket list can take; each ends in `id` so keys are unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketOrder {
    CreatedDesc,
    CreatedAsc,
    UpdatedDesc,
    PriorityDesc,
}

/// The position of the last row seen, in the order's own key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TicketKey {
    /// Microseconds (what both stores keep): cheaper in a cursor than RFC 3339.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub rank: i16,
    pub id: Uuid,
}

impl TicketKey {
    pub fn of(row: &TicketRow, order: TicketOrder) -> Self {
        let at = match order {
            TicketOrder::UpdatedDesc => row.updated_at,
            _ => row.created_at,
        };
        Self { at, rank: row.priority_rank, id: row.id }
    }
}

/// What a ticket list asks for. `reporter_only` is the caller's RBAC scope.
#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub visible_to_reporter: Option<Uuid>,
    pub include_deleted: bool,
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub assignee: Option<Uuid>,
    pub reporter: Option<Uuid>,
    pub search: Option<String>,
    pub order: Option<TicketOrder>,
    pub after: Option<TicketKey>,
    pub limit: i64,
    /// Leaves each row's description empty, for a page that does not show
    /// it: a description can be long, and was most of what a page of the
    /// benchmark's tickets read.
    pub omit_description: bool,
    /// Leaves each row's sealed notes out (`None`), likewise.
    pub omit_notes: bool,
}

/// A ticket's columns, for `SELECT`s that add more before `FROM`; the
/// description and the sealed notes as given (a list may leave them out).
macro_rules! ticket_columns {
    () => {
        ticket_columns!("description", "notes_envelope")
    };
    ($description:literal, $notes:literal) => {
        concat!(
            "SELECT id, title, ",
            $description,
            ", priority, priority_rank, status, reporter_id, assignee_id, created_at, updated_at, version, ",
            $notes,
            ", deleted_at"
        )
    };
}
const TICKET_COLUMNS: &str = concat!(ticket_columns!(), " FROM tickets");
const USER_COLUMNS: &str =
    "SELECT id, email, display_name, role, disabled, password_hash, created_at, version, disabled_at FROM users";

/// Escapes `%`, `_` and `\` so a search is a plain substring match.
fn like_pattern(search: &str) -> String {
    let escaped: String = search
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

/// Builds the list query for either database with its own placeholders.
macro_rules! ticket_list_query {
    ($query:expr) => {{
        let q: &TicketQuery = $query;
        let mut sql = QueryBuilder::new(match (q.omit_description, q.omit_notes) {
            (false, false) => ticket_columns!(),
            (true, false) => ticket_columns!("'' AS description", "notes_envelope"),
            (false, true) => ticket_columns!("description", "NULL AS notes_envelope"),
            (true, true) => ticket_columns!("'' AS description", "NULL AS notes_envelope"),
        });
        sql.push(" FROM tickets WHERE 1 = 1");
        if let Some(reporter) = q.visible_to_reporter {
            sql.push(" AND reporter_id = ").push_bind(reporter);
        }
        if !q.include_deleted {
            sql.push(" AND deleted_at IS NULL");
        }
        // Closed sets written as literals: one plan per value (their shares
        // of the table differ), kept by PostgreSQL instead of made afresh
        // for every page.
        if let Some(status) = q.status {
            sql.push(format_args!(" AND status = '{}'", status.as_str()));
        }
        if let Some(priority) = q.priority {
            sql.push(format_args!(" AND priority = '{}'", priority.as_str()));
        }
        if let Some(assignee) = q.assignee {
            sql.push(" AND assignee_id = ").push_bind(assignee);
        }
        if let Some(reporter) = q.reporter {
            sql.push(" AND reporter_id = ").push_bind(reporter);
        }
        if let Some(search) = q.search.as_deref().filter(|s| !s.trim().is_empty()) {
            let pattern = like_pattern(search.trim());
            sql.push(" AND search_text LIKE ").push_bind(pattern).push(" ESCAPE '\\'");
        }
        let order = q.order.unwrap_or(TicketOrder::CreatedDesc);
        if let Some(key) = &q.after {
            match order {
                TicketOrder::CreatedDesc => {
                    sql.push(" AND (created_at, id) < (").push_bind(key.at).push(", ").push_bind(key.id).push(")");
                }
                TicketOrder::CreatedAsc => {
                    sql.push(" AND (created_at, id) > (").push_bind(key.at).push(", ").push_bind(key.id).push(")");
                }
                TicketOrder::UpdatedDesc => {
                    sql.push(" AND (updated_at, id) < (").push_bind(key.at).push(", ").push_bind(key.id).push(")");
                }
                TicketOrder::PriorityDesc => {
                    sql.push(" AND (priority_rank, created_at, id) < (")
                        .push_bind(key.rank)
                        .push(", ")
                        .push_bind(key.at)
                        .push(", ")
                        .push_bind(key.id)
                        .push(")");
                }
            }
        }
        sql.push(match order {
            TicketOrder::CreatedDesc => " ORDER BY created_at DESC, id DESC",
            TicketOrder::CreatedAsc => " ORDER BY created_at ASC, id ASC",
            TicketOrder::UpdatedDesc => " ORDER BY updated_at DESC, id DESC",
            TicketOrder::PriorityDesc => " ORDER BY priority_rank DESC, created_at DESC, id DESC",
        });
        // A literal, not a parameter: PostgreSQL cannot plan a bound
        // LIMIT once for all, so it planned every page afresh (~0.12 ms).
        sql.push(format_args!(" LIMIT {}", q.limit));
        sql
    }};
}

/// A ticket's history as a JSON array, oldest first (PostgreSQL).
/// Only for tickets of at most `HISTORY_WITH_ROW` events (a ticket's version
/// counts its events): JSON costs PostgreSQL more a row than binary rows
/// (an 8,300-event history: 5 → 20 ms of its CPU), and a long history is
/// for the caller to read when it can afford to hold it.
static HISTORY_AS_JSON: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "CASE WHEN version <= {HISTORY_WITH_ROW} THEN (SELECT COALESCE(json_agg(h ORDER BY h.sequence), '[]')::text \
         FROM (SELECT sequence, at, actor_id, actor_role, action, field, from_value, to_value FROM ticket_history \
         WHERE ticket_id = $1) h) END AS history"
    )
});
/// A ticket's attachments as a JSON array, in the order added (PostgreSQL).
const ATTACHMENTS_AS_JSON: &str = "(SELECT COALESCE(json_agg(a ORDER BY a.sequence), '[]')::text FROM \
    (SELECT id, ticket_id, filename, content_type, size, sha256, uploaded_by, uploaded_at, sequence \
    FROM attachments WHERE ticket_id = $1) a) AS attachments";

/// A ticket's row with its parts as JSON text (`NULL` when not asked).
#[derive(sqlx::FromRow)]
struct TicketJoined {
    #[sqlx(flatten)]
    row: TicketRow,
    history: Option<String>,
    attachments: Option<String>,
}

/// Rows sent as a JSON array, when they were sent.
fn json_rows<T: serde::de::DeserializeOwned>(json: Option<String>) -> Result<Option<Vec<T>>, sqlx::Error> {
    json.map(|json| serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(e.into()))).transpose()
}

async fn ticket_with_one_by_one(
    pool: &sqlx::SqlitePool,
    id: Uuid,
    parts: TicketParts,
) -> Result<Option<TicketInFull>, sqlx::Error> {
    let sql = format!("{TICKET_COLUMNS} WHERE id = $1");
    let ids = [id];
    let mut conn = pool.acquire().await?;
    let Some(row) = sqlx::query_as(&sql).bind(id).fetch_optional(&mut *conn).await? else { return Ok(None) };
    let mut full = TicketInFull { row, history: None, attachments: Vec::new() };
    if parts.history && full.row.version <= HISTORY_WITH_ROW {
        let rows: Vec<TicketHistoryRow> =
            by_tickets(HISTORY_COLUMNS, &ids).build_query_as().fetch_all(&mut *conn).await?;
        full.history = Some(rows.into_iter().map(|row| row.entry).collect());
    }
    if parts.attachments {
        full.attachments = by_tickets(ATTACHMENT_COLUMNS, &ids).build_query_as().fetch_all(&mut *conn).await?;
    }
    Ok(Some(full))
}

#[derive(Clone)]
pub struct ReadModels {
    db: Db,
    reads: Statements,
    progress: watch::Receiver<Checkpoint>,
    projected: Option<Arc<Projected>>,
    users: Arc<std::sync::Mutex<HashMap<Uuid, CachedUser>>>,
}

/// What the per-request caller check needs of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub role: String,
    pub disabled: bool,
    /// When the account was last disabled (see [`UserRow::disabled_at`]).
    pub disabled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct CachedUser {
    /// `None`: forgotten on purpose; read again, and keep nothing older
    /// than `version`.
    user: Option<Arc<UserRow>>,
    version: i64,
    fetched: std::time::Instant,
    /// The in-process projector's generation when this was read.
    generation: u64,
}

/// How long a user's row (role, disabled flag, display name) is served
/// from memory. The in-process projector's own changes end an entry at
/// once; this bounds how long another replica's projector's changes take
/// to be seen.
pub const ACCESS_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Users kept in memory at most; beyond, it starts afresh.
const ACCESS_CAPACITY: usize = 10_000;

impl ReadModels {
    /// Queries run on `reads` (the write side's [`Statements`], so that one
    /// pool serves both), on their store; `progress` comes from the projector
    /// and wakes read-your-writes waits.
    pub fn new(reads: Statements, progress: watch::Receiver<Checkpoint>) -> Self {
        Self { db: reads.db(), reads, progress, projected: None, users: Arc::default() }
    }

    /// Lets waits consult the in-process projector before the database.
    #[must_use]
    pub fn with_projected(mut self, projected: Arc<Projected>) -> Self {
        self.projected = Some(projected);
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Closes the single statements' connections (shared with the write
    /// side), then the store's.
    pub async fn close(&self) {
        self.reads.close().await;
        self.db.close().await;
    }

    /// # Errors
    /// When the store fails.
    pub async fn ticket(&self, id: Uuid) -> Result<Option<TicketRow>, sqlx::Error> {
        Ok(self.ticket_with(id, TicketParts::default()).await?.map(|ticket| ticket.row))
    }

    /// A ticket's row and, as asked, its history and attachments. On
    /// PostgreSQL in one statement, the parts as JSON arrays: each further
    /// statement cost a round trip, and a detail read with three ran at
    /// three quarters of the rate of the row alone (measured: 4,100–4,500
    /// → 5,100–5,400 detail reads a second). JSON costs PostgreSQL more a
    /// row than binary rows, so a 50-event history reads about 8 % slower
    /// than before. On SQLite, which has no round trips, one query after
    /// the other on one connection. On both, the history of a ticket of
    /// over [`HISTORY_WITH_ROW`] events is left to the caller.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn ticket_with(&self, id: Uuid, parts: TicketParts) -> Result<Option<TicketInFull>, sqlx::Error> {
        if let Statements::Sqlite(pool) = &self.reads {
            return ticket_with_one_by_one(pool, id, parts).await;
        }
        let sql = format!(
            concat!(ticket_columns!(), ", {}, {} FROM tickets WHERE id = $1"),
            if parts.history { HISTORY_AS_JSON.as_str() } else { "NULL::text AS history" },
            if parts.attachments { ATTACHMENTS_AS_JSON } else { "NULL::text AS attachments" },
        );
        let joined: Option<TicketJoined> =
            on_reads!(&self.reads, conn => sqlx::query_as(&sql).bind(id).fetch_optional(conn).await)?;
        let Some(joined) = joined else { return Ok(None) };
        let (history, attachments) = (json_rows(joined.history)?, json_rows(joined.attachments)?);
        Ok(Some(TicketInFull { row: joined.row, history, attachments: attachments.unwrap_or_default() }))
    }

    /// # Errors
    /// When the store fails.
    pub async fn tickets(&self, query: &TicketQuery) -> Result<Vec<TicketRow>, sqlx::Error> {
        on_reads!(&self.reads, conn => ticket_list_query!(query).build_query_as().fetch_all(conn).await)
    }

    /// A ticket's whole history, oldest first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn history(&self, ticket: Uuid) -> Result<Vec<HistoryRow>, sqlx::Error> {
        self.history_page(ticket, 0, None, true).await
    }

    /// Up to `limit` entries of a ticket's history after sequence `after`,
    /// oldest first, read in SQL rather than cut from the whole history;
    /// changes to the confidential notes only `with_notes` (see
    /// [`HistoryRow::seen_by`]).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn history_page(
        &self,
        ticket: Uuid,
        after: i64,
        limit: Option<usize>,
        with_notes: bool,
    ) -> Result<Vec<HistoryRow>, sqlx::Error> {
        // Decoded straight into the entries (the ticket's id, which the
        // columns also name, is left out): a long history is not copied.
        on_reads!(&self.reads, conn => {
            let mut sql = QueryBuilder::new(HISTORY_COLUMNS);
            sql.push(" WHERE ticket_id = ").push_bind(ticket).push(" AND sequence > ").push_bind(after);
            if !with_notes {
                sql.push(format_args!(" AND (field IS NULL OR field <> '{NOTES_FIELD}')"));
            }
            sql.push(" ORDER BY sequence");
            // A literal, as for the lists: a bound LIMIT is planned afresh each time.
            if let Some(limit) = limit {
                sql.push(format_args!(" LIMIT {limit}"));
            }
            sql.build_query_as().fetch_all(conn).await
        })
    }

    /// The attachments of many tickets in one query, in the order added.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn attachments_of(&self, tickets: &[Uuid]) -> Result<Vec<AttachmentRow>, sqlx::Error> {
        if tickets.is_empty() {
            return Ok(Vec::new());
        }
        on_reads!(&self.reads, conn => by_tickets(ATTACHMENT_COLUMNS, tickets).build_query_as().fetch_all(conn).await)
    }

    /// The history of many tickets in one query, oldest first.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn histories(&self, tickets: &[Uuid]) -> Result<Vec<(Uuid, HistoryRow)>, sqlx::Error> {
        if tickets.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<TicketHistoryRow> = on_reads!(&self.reads, conn => by_tickets(HISTORY_COLUMNS, tickets).build_query_as().fetch_all(conn).await)?;
        Ok(rows.into_iter().map(|row| (row.ticket_id, row.entry)).collect())
    }

    /// A ticket's attachments in the order they were added.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn attachments(&self, ticket: Uuid) -> Result<Vec<AttachmentRow>, sqlx::Error> {
        self.attachments_of(&[ticket]).await
    }

    /// # Errors
    /// When the store fails.
    pub async fn attachment(&self, id: Uuid) -> Result<Option<AttachmentRow>, sqlx::Error> {
        let sql = format!("{ATTACHMENT_COLUMNS} WHERE id = $1");
        on_reads!(&self.reads, conn => sqlx::query_as(&sql).bind(id).fetch_optional(conn).await)
    }

    /// Whether any attachment still points at this blob.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn blob_referenced(&self, sha256: &str) -> Result<bool, sqlx::Error> {
        const SQL: &str = "SELECT COUNT(*) FROM attachments WHERE sha256 = $1";
        let count: i64 = on_reads!(&self.reads, conn => sqlx::query_scalar(SQL).bind(sha256).fetch_one(conn).await)?;
        Ok(count > 0)
    }

    /// # Errors
    /// When the store fails.
    pub async fn user(&self, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
        let sql = format!("{USER_COLUMNS} WHERE id = $1");
        on_reads!(&self.reads, conn => sqlx::query_as(&sql).bind(id).fetch_optional(conn).await)
    }

    /// A user's role and disabled flag for the caller check of every
    /// request, from memory while that is known to be current (see
    /// [`ReadModels::users_by_ids`]). Otherwise one query.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn access(&self, id: Uuid) -> Result<Option<Access>, sqlx::Error> {
        let user = self.users_by_ids(&[id]).await?.pop();
        Ok(user.map(|user| Access { role: user.role.clone(), disabled: user.disabled, disabled_at: user.disabled_at }))
    }

    /// Forgets what memory holds of a user after this process changed it
    /// to `version`; rows older than that are not kept again.
    pub fn forget_access(&self, id: Uuid, version: i64) {
        if let Ok(mut cache) = self.users.lock() {
            let generation = self.projected.as_ref().map_or(0, |p| p.generation());
            let fetched = std::time::Instant::now();
            cache.insert(id, CachedUser { user: None, version, fetched, generation });
        }
    }

    /// Users by id: those known to be current from memory (read less than
    /// `ACCESS_TTL` ago, and this process's projector has applied nothing
    /// newer to the account since), the others in one query, then kept.
    /// The caller check of every request and the GraphQL user loader both
    /// come here, so a ticket's reporter is rarely read twice.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn users_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Arc<UserRow>>, sqlx::Error> {
        let generation = self.projected.as_ref().map_or(0, |p| p.generation());
        let mut found = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        if let Ok(cache) = self.users.lock() {
            for id in ids {
                let applied = self.projected.as_ref().and_then(|p| p.version(*id));
                let fresh = cache.get(id).filter(|entry| {
                    entry.fetched.elapsed() < ACCESS_TTL
                        && entry.generation == generation
                        && applied.is_none_or(|applied| applied <= entry.version)
                });
                match fresh.and_then(|entry| entry.user.clone()) {
                    Some(user) => found.push(user),
                    None => missing.push(*id),
                }
            }
        } else {
            missing.extend_from_slice(ids);
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let fetched = std::time::Instant::now();
        let rows: Vec<UserRow> = on_reads!(&self.reads, conn => {
            let mut sql = QueryBuilder::new(USER_COLUMNS);
            sql.push(" WHERE id IN ");
            push_id_list(&mut sql, &missing);
            sql.build_query_as().fetch_all(conn).await
        })?;
        let rows: Vec<Arc<UserRow>> = rows.into_iter().map(Arc::new).collect();
        if let Ok(mut cache) = self.users.lock() {
            if cache.len() + rows.len() > ACCESS_CAPACITY {
                cache.clear();
            }
            for user in &rows {
                // A read that raced a newer change (or a `forget_access`) is
                // used for this request only.
                if cache.get(&user.id).is_none_or(|entry| entry.version <= user.version) {
                    let entry = CachedUser { user: Some(user.clone()), version: user.version, fetched, generation };
                    cache.insert(user.id, entry);
                }
            }
        }
        found.extend(rows);
        Ok(found)
    }

    /// # Errors
    /// When the store fails.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
        let sql = format!("{USER_COLUMNS} WHERE email = $1");
        on_reads!(&self.reads, conn => sqlx::query_as(&sql).bind(email).fetch_optional(conn).await)
    }

    /// The addresses of accounts whose address is not plain ASCII: the only
    /// ones a new address can be a look-alike of once it passed
    /// `Email::check_not_lookalike` (an ASCII one cannot imitate them).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn non_ascii_emails(&self) -> Result<Vec<String>, sqlx::Error> {
        // Emails hold no control characters, so "outside space to tilde" is
        // "not ASCII" on both stores.
        const POSTGRES: &str = "SELECT email FROM users WHERE email ~ '[^ -~]'";
        const SQLITE: &str = "SELECT email FROM users WHERE email GLOB '*[^ -~]*'";
        let sql = if self.db().is_postgres() { POSTGRES } else { SQLITE };
        on_reads!(&self.reads, conn => sqlx::query_scalar(sql).fetch_all(conn).await)
    }

    /// Users in creation order after `(created_at, id)`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn users(&self, after: Option<(DateTime<Utc>, Uuid)>, limit: i64) -> Result<Vec<UserRow>, sqlx::Error> {
        // No sentinel for the first page: PostgreSQL refuses `MIN_UTC` as a timestamptz.
        let Some((at, id)) = after else {
            let sql = format!("{USER_COLUMNS} ORDER BY created_at, id LIMIT {limit}");
            return on_reads!(&self.reads, conn => sqlx::query_as(&sql).fetch_all(conn).await);
        };
        let sql = format!("{USER_COLUMNS} WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT {limit}");
        on_reads!(&self.reads, conn => sqlx::query_as(&sql).bind(at).bind(id).fetch_all(conn).await)
    }

    /// Admins who can still sign in.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn active_admins(&self) -> Result<i64, sqlx::Error> {
        const SQL: &str = "SELECT COUNT(*) FROM users WHERE role = 'ADMIN' AND NOT disabled";
        on_reads!(&self.reads, conn => sqlx::query_scalar(SQL).fetch_one(conn).await)
    }

    /// Waits until `table`'s row `id` has reached `version`, so a mutation can
    /// answer with its own effect; `appended_here` says this process has
    /// just appended that version. Gives up after `limit` and says so.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn wait_for(
        &self,
        table: Table,
        id: Uuid,
        version: u64,
        appended_here: bool,
        limit: Duration,
    ) -> Result<bool, sqlx::Error> {
        let sql = match table {
            Table::Tickets => "SELECT version FROM tickets WHERE id = $1",
            Table::Users => "SELECT version FROM users WHERE id = $1",
        };
        let wanted = i64::try_from(version).unwrap_or(i64::MAX);
        let mut progress = self.progress.clone();
        let deadline = tokio::time::Instant::now() + limit;
        let in_process = || self.projected.as_ref().and_then(|p| p.version(id)).is_some_and(|v| v >= wanted);
        // Ask the database first only when this process has never applied
        // the stream (e.g. a no-op on an old ticket after a restart), and
        // not for what this process just appended while its projector leads:
        // that shows up in process first.
        let leading = self.projected.as_ref().is_some_and(|p| p.leading());
        let mut ask_database =
            !(leading && appended_here) && self.projected.as_ref().is_none_or(|p| p.version(id).is_none());
        loop {
            progress.borrow_and_update();
            if in_process() {
                return Ok(true);
            }
            if ask_database {
                let seen: Option<i64> =
                    on_reads!(&self.reads, conn => sqlx::query_scalar(sql).bind(id).fetch_optional(conn).await)?;
                if seen.is_some_and(|seen| seen >= wanted) {
                    return Ok(true);
                }
            }
            // Another process may be the projector, or this stream may have
            // been projected before the wait began: poll as well as listen.
            let wait = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    _ = progress.changed() => false,
                    () = tokio::time::sleep(Duration::from_millis(25)) => true,
                }
            });
            match wait.await {
                Ok(timed_out) => ask_database = timed_out || self.projected.is_none(),
                Err(_) => return Ok(false),
            }
        }
    }

    /// How many events the projector has yet to apply (approximate on PostgreSQL).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn lag(&self) -> Result<i64, sqlx::Error> {
        let checkpoint = crate::projector::stored_checkpoint(&self.db).await?;
        crate::projector::remaining(&self.db, None, checkpoint, None).await
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Table {
    Tickets,
    Users,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bound, the LIMIT and the filters had PostgreSQL plan every page afresh.
    #[test]
    fn list_limits_and_closed_filters_are_written_into_the_sql() {
        let query = TicketQuery { limit: 51, status: Some(Status::InProgress), ..TicketQuery::default() };
        let sql = ticket_list_query!(&query);
        let sql: &sqlx::QueryBuilder<'_, sqlx::Postgres> = &sql;
        assert!(sql.sql().ends_with(" LIMIT 51"), "{}", sql.sql());
        assert!(sql.sql().contains(" AND status = 'IN_PROGRESS'"), "{}", sql.sql());
    }

    #[test]
    fn search_patterns_match_literally() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern("VPN"), "%vpn%");
    }
}
