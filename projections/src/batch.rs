//! Turns one batch of writes into as few statements as possible: rows born
//! in the batch absorb their later changes and are inserted many per
//! statement; history and attachments are inserted many per statement.
//! Changes to tickets that existed before the batch are folded per ticket
//! and applied by one UPDATE per batch.
//!
//! On PostgreSQL every statement takes its rows as one array per column
//! (`UNNEST`), so each has one text whatever the batch's size: prepared
//! once per connection, never re-planned for a new row count, and without
//! a bind parameter per value. SQLite has no arrays and takes multi-row
//! `VALUES` in chunks.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use crate::read::TicketRow;
use crate::writes::{AttachmentRow, HistoryEntry, TicketChange, UserChange, Write};

/// Rows per multi-row INSERT: SQLite allows 32,766 parameters per
/// statement, and the widest row here has 14.
const ROWS_PER_INSERT: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: &'static str,
    pub disabled: bool,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub version: i64,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// What a search matches: title and description lower-cased here, since
/// SQLite's `lower()` folds ASCII only.
fn search_text(ticket: &TicketRow) -> String {
    format!("{}\n{}", ticket.title, ticket.description).to_lowercase()
}

/// What one batch changes in a ticket that existed before it, folded.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketPatch {
    pub id: Uuid,
    pub status: Option<&'static str>,
    pub priority: Option<(&'static str, i16)>,
    /// `Some(None)` clears the assignee.
    pub assignee: Option<Option<Uuid>>,
    pub notes_envelope: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl TicketPatch {
    fn new(id: Uuid, at: DateTime<Utc>, version: i64) -> Self {
        Self {
            id,
            status: None,
            priority: None,
            assignee: None,
            notes_envelope: None,
            deleted_at: None,
            updated_at: at,
            version,
        }
    }

    fn absorb(&mut self, change: TicketChange, at: DateTime<Utc>, version: i64) {
        match change {
            TicketChange::Status(status) => self.status = Some(status),
            TicketChange::Priority(priority, rank) => self.priority = Some((priority, rank)),
            TicketChange::Assignee(assignee) => self.assignee = Some(assignee),
            TicketChange::Notes(envelope) => self.notes_envelope = Some(envelope),
            TicketChange::Deleted => self.deleted_at = Some(at),
            TicketChange::Touched => {}
        }
        self.updated_at = at;
        self.version = version;
    }
}

/// Every column a patch may set; a `NULL` keeps the stored value, but for
/// the assignee, which `set_assignee` decides. The rows come from `v`.
const UPDATE_TICKETS: &str = "UPDATE tickets SET \
    status = COALESCE(v.status, tickets.status), \
    priority = COALESCE(v.priority, tickets.priority), \
    priority_rank = COALESCE(v.priority_rank, tickets.priority_rank), \
    assignee_id = CASE WHEN v.set_assignee THEN v.assignee_id ELSE tickets.assignee_id END, \
    notes_envelope = COALESCE(v.notes_envelope, tickets.notes_envelope), \
    deleted_at = COALESCE(v.deleted_at, tickets.deleted_at), \
    updated_at = v.updated_at, version = v.version FROM ";
/// One patch on SQLite, with the same meaning as `UPDATE_TICKETS`.
const UPDATE_TICKET_SQLITE: &str = "UPDATE tickets SET \
    status = COALESCE($2, status), priority = COALESCE($3, priority), \
    priority_rank = COALESCE($4, priority_rank), \
    assignee_id = CASE WHEN $5 THEN $6 ELSE assignee_id END, \
    notes_envelope = COALESCE($7, notes_envelope), deleted_at = COALESCE($8, deleted_at), \
    updated_at = $9, version = $10 WHERE id = $1";
const PATCH_COLUMNS: &str =
    "id, status, priority, priority_rank, set_assignee, assignee_id, notes_envelope, deleted_at, updated_at, version";
const INSERT_USERS: &str =
    "INSERT INTO users (id, email, display_name, role, disabled, password_hash, created_at, version, disabled_at) ";
const INSERT_TICKETS: &str = "INSERT INTO tickets (id, title, description, priority, priority_rank, status, \
    reporter_id, assignee_id, created_at, updated_at, version, notes_envelope, deleted_at, search_text) ";
const INSERT_ATTACHMENTS: &str = "INSERT INTO attachments (id, ticket_id, filename, content_type, size, sha256, \
    uploaded_by, uploaded_at, sequence) ";
const INSERT_HISTORY: &str = "INSERT INTO ticket_history (ticket_id, sequence, at, actor_id, actor_role, action, \
    field, from_value, to_value) ";

/// A batch's writes, folded.
#[derive(Debug, Default)]
pub struct Batch {
    pub users: Vec<NewUser>,
    pub user_updates: Vec<(Uuid, UserChange, i64)>,
    pub tickets: Vec<TicketRow>,
    pub ticket_updates: Vec<TicketPatch>,
    pub attachments: Vec<AttachmentRow>,
    pub history: Vec<HistoryEntry>,
    /// The new rows already in `COPY`'s form, when made ahead
    /// ([`Batch::encode_copies`]).
    copies: Option<Copies>,
}

/// A batch's new rows in binary `COPY` form: per table, the `INSERT` head
/// naming its columns, and the data.
#[derive(Default)]
struct Copies(Vec<(&'static str, Vec<u8>)>);

impl std::fmt::Debug for Copies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(head, data)| (head, data.len()))).finish()
    }
}

impl NewUser {
    fn absorb(&mut self, change: UserChange, version: i64) {
        match change {
            UserChange::Role(role) => self.role = role,
            UserChange::PasswordHash(hash) => self.password_hash = hash,
            UserChange::Disabled(at) => (self.disabled, self.disabled_at) = (true, Some(at)),
            UserChange::Enabled => self.disabled = false,
        }
        self.version = version;
    }
}

impl Batch {
    /// Folds `writes`, which are in event order.
    pub fn plan(writes: Vec<Write>) -> Self {
        let mut batch = Batch::default();
        let mut new_tickets: HashMap<Uuid, usize> = HashMap::new();
        let mut new_users: HashMap<Uuid, usize> = HashMap::new();
        let mut patches: HashMap<Uuid, usize> = HashMap::new();
        for write in writes {
            match write {
                Write::InsertTicket {
                    id,
                    title,
                    description,
                    priority,
                    priority_rank,
                    status,
                    reporter,
                    at,
                    version,
                } => {
                    new_tickets.insert(id, batch.tickets.len());
                    batch.tickets.push(TicketRow {
                        id,
                        title,
                        description,
                        priority: priority.to_owned(),
                        priority_rank,
                        status: status.to_owned(),
                        reporter_id: reporter,
                        assignee_id: None,
                        created_at: at,
                        updated_at: at,
                        version,
                        notes_envelope: None,
                        deleted_at: None,
                    });
                }
                Write::UpdateTicket { id, change, at, version } => match new_tickets.get(&id) {
                    Some(&index) => batch.tickets[index].absorb(change, at, version),
                    None => {
                        let index = *patches.entry(id).or_insert_with(|| {
                            batch.ticket_updates.push(TicketPatch::new(id, at, version));
                            batch.ticket_updates.len() - 1
                        });
                        batch.ticket_updates[index].absorb(change, at, version);
                    }
                },
                Write::InsertHistory(entry) => batch.history.push(entry),
                Write::InsertAttachment(row) => batch.attachments.push(row),
                Write::InsertUser { id, email, display_name, role, password_hash, at } => {
                    new_users.insert(id, batch.users.len());
                    batch.users.push(NewUser {
                        id,
                        email,
                        display_name,
                        role,
                        disabled: false,
                        password_hash,
                        created_at: at,
                        version: 1,
                        disabled_at: None,
                    });
                }
                Write::UpdateUser { id, change, version } => match new_users.get(&id) {
                    Some(&index) => batch.users[index].absorb(change, version),
                    None => batch.user_updates.push((id, change, version)),
                },
            }
        }
        batch
    }
}

/// PostgreSQL's statements, each built once: every row kind's columns as
/// arrays, unnested.
static PG_INSERT_USERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{INSERT_USERS} SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], \
         $6::text[], $7::timestamptz[], $8::int8[], $9::timestamptz[])"
    )
});
static PG_INSERT_TICKETS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{INSERT_TICKETS} SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int2[], \
         $6::text[], $7::uuid[], $8::uuid[], $9::timestamptz[], $10::timestamptz[], $11::int8[], $12::text[], \
         $13::timestamptz[], $14::text[])"
    )
});
static PG_UPDATE_TICKETS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{UPDATE_TICKETS} UNNEST($1::uuid[], $2::text[], $3::text[], $4::int2[], $5::bool[], $6::uuid[], \
         $7::text[], $8::timestamptz[], $9::timestamptz[], $10::int8[]) AS v({PATCH_COLUMNS}) \
         WHERE tickets.id = v.id"
    )
});
static PG_INSERT_ATTACHMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{INSERT_ATTACHMENTS} SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], \
         $5::int8[], $6::text[], $7::uuid[], $8::timestamptz[], $9::int8[])"
    )
});
static PG_INSERT_HISTORY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{INSERT_HISTORY} SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::uuid[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])"
    )
});

/// One column of a batch's rows, as the array PostgreSQL unnests.
fn column<'a, T: 'a, V>(rows: &'a [T], value: impl FnMut(&'a T) -> V) -> Vec<V> {
    rows.iter().map(value).collect()
}

/// Applies a folded batch on PostgreSQL: one statement per kind of row.
/// A rebuild's batches (thousands of rows, encoded ahead by
/// [`Batch::encode_copies`]) send their new rows by binary `COPY`, which
/// PostgreSQL stores without an array per column to build, send and unnest
/// (measured: a rebuild's write transaction 29 → 26 ms a batch of 4,000
/// events, PostgreSQL's CPU 0.010 → 0.008 ms an event); a live batch of a
/// few rows keeps its prepared `INSERT`s, one round trip each where a
/// `COPY` takes two. Only rows that existed before the batch are updated,
/// so the inserts may come first.
pub(crate) async fn apply_postgres(conn: &mut sqlx::PgConnection, batch: &Batch) -> Result<(), sqlx::Error> {
    // Encoded, the new rows are only in `copies`.
    match &batch.copies {
        Some(copies) => send_copies(conn, copies).await?,
        None => insert_new_rows(conn, batch).await?,
    }
    for (id, change, version) in &batch.user_updates {
        crate::writes::update_user!(conn, id, change, version);
    }
    if !batch.ticket_updates.is_empty() {
        let patches = &batch.ticket_updates;
        sqlx::query(&PG_UPDATE_TICKETS)
            .bind(column(patches, |p| p.id))
            .bind(column(patches, |p| p.status))
            .bind(column(patches, |p| p.priority.map(|(name, _)| name)))
            .bind(column(patches, |p| p.priority.map(|(_, rank)| rank)))
            .bind(column(patches, |p| p.assignee.is_some()))
            .bind(column(patches, |p| p.assignee.flatten()))
            .bind(column(patches, |p| p.notes_envelope.as_deref()))
            .bind(column(patches, |p| p.deleted_at))
            .bind(column(patches, |p| p.updated_at))
            .bind(column(patches, |p| p.version))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The batch's new rows by prepared `INSERT … SELECT FROM UNNEST`.
async fn insert_new_rows(conn: &mut sqlx::PgConnection, batch: &Batch) -> Result<(), sqlx::Error> {
    if !batch.users.is_empty() {
        let users = &batch.users;
        sqlx::query(&PG_INSERT_USERS)
            .bind(column(users, |u| u.id))
            .bind(column(users, |u| u.email.as_str()))
            .bind(column(users, |u| u.display_name.as_str()))
            .bind(column(users, |u| u.role))
            .bind(column(users, |u| u.disabled))
            .bind(column(users, |u| u.password_hash.as_str()))
            .bind(column(users, |u| u.created_at))
            .bind(column(users, |u| u.version))
            .bind(column(users, |u| u.disabled_at))
            .execute(&mut *conn)
            .await?;
    }
    if !batch.tickets.is_empty() {
        let tickets = &batch.tickets;
        sqlx::query(&PG_INSERT_TICKETS)
            .bind(column(tickets, |t| t.id))
            .bind(column(tickets, |t| t.title.as_str()))
            .bind(column(tickets, |t| t.description.as_str()))
            .bind(column(tickets, |t| t.priority.as_str()))
            .bind(column(tickets, |t| t.priority_rank))
            .bind(column(tickets, |t| t.status.as_str()))
            .bind(column(tickets, |t| t.reporter_id))
            .bind(column(tickets, |t| t.assignee_id))
            .bind(column(tickets, |t| t.created_at))
            .bind(column(tickets, |t| t.updated_at))
            .bind(column(tickets, |t| t.version))
            .bind(column(tickets, |t| t.notes_envelope.as_deref()))
            .bind(column(tickets, |t| t.deleted_at))
            .bind(column(tickets, search_text))
            .execute(&mut *conn)
            .await?;
    }
    if !batch.attachments.is_empty() {
        let added = &batch.attachments;
        sqlx::query(&PG_INSERT_ATTACHMENTS)
            .bind(column(added, |a| a.row.id))
            .bind(column(added, |a| a.row.ticket_id))
            .bind(column(added, |a| a.row.filename.as_str()))
            .bind(column(added, |a| a.row.content_type.as_str()))
            .bind(column(added, |a| a.row.size))
            .bind(column(added, |a| a.row.sha256.as_str()))
            .bind(column(added, |a| a.row.uploaded_by))
            .bind(column(added, |a| a.row.uploaded_at))
            .bind(column(added, |a| a.sequence))
            .execute(&mut *conn)
            .await?;
    }
    if !batch.history.is_empty() {
        let history = &batch.history;
        sqlx::query(&PG_INSERT_HISTORY)
            .bind(column(history, |h| h.ticket_id))
            .bind(column(history, |h| h.sequence))
            .bind(column(history, |h| h.at))
            .bind(column(history, |h| h.actor_id))
            .bind(column(history, |h| h.actor_role.as_deref()))
            .bind(column(history, |h| h.action))
            .bind(column(history, |h| h.field))
            .bind(column(history, |h| h.from.as_deref()))
            .bind(column(history, |h| h.to.as_deref()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Batch {
    /// Puts the new rows in `COPY`'s form now, so that applying the batch
    /// only sends them. A rebuild does this while the batch before is being
    /// written: encoding on the writing path kept PostgreSQL's writer waiting.
    /// The new rows then live only in that form: `users`, `tickets`,
    /// `attachments` and `history` are left empty (two batches are held at
    /// once, and a batch of new tickets with their text is megabytes).
    ///
    /// # Errors
    /// When a value cannot be encoded.
    pub(crate) fn encode_copies(&mut self) -> Result<(), sqlx::Error> {
        self.copies = Some(copies_of(self)?);
        (self.users, self.tickets, self.attachments, self.history) = Default::default();
        Ok(())
    }
}

/// The batch's new rows in binary `COPY` form, the same columns as the `INSERT`s.
fn copies_of(batch: &Batch) -> Result<Copies, sqlx::Error> {
    let mut copies = Copies::default();
    copies.add(INSERT_USERS, &batch.users, |row, u| {
        row.start(9).field(&u.id)?.field(&u.email)?.field(&u.display_name)?.field(&u.role)?;
        row.field(&u.disabled)?.field(&u.password_hash)?.field(&u.created_at)?.field(&u.version)?;
        row.field(&u.disabled_at)?;
        Ok(())
    })?;
    copies.add(INSERT_TICKETS, &batch.tickets, |row, t| {
        row.start(14).field(&t.id)?.field(&t.title)?.field(&t.description)?.field(&t.priority)?;
        row.field(&t.priority_rank)?.field(&t.status)?.field(&t.reporter_id)?.field(&t.assignee_id)?;
        row.field(&t.created_at)?.field(&t.updated_at)?.field(&t.version)?.field(&t.notes_envelope)?;
        row.field(&t.deleted_at)?.field(&search_text(t))?;
        Ok(())
    })?;
    copies.add(INSERT_ATTACHMENTS, &batch.attachments, |row, added| {
        let a = &added.row;
        row.start(9).field(&a.id)?.field(&a.ticket_id)?.field(&a.filename)?.field(&a.content_type)?;
        row.field(&a.size)?.field(&a.sha256)?.field(&a.uploaded_by)?.field(&a.uploaded_at)?;
        row.field(&added.sequence)?;
        Ok(())
    })?;
    copies.add(INSERT_HISTORY, &batch.history, |row, h| {
        row.start(9).field(&h.ticket_id)?.field(&h.sequence)?.field(&h.at)?.field(&h.actor_id)?;
        row.field(&h.actor_role)?.field(&h.action)?.field(&h.field)?.field(&h.from)?.field(&h.to)?;
        Ok(())
    })?;
    Ok(copies)
}

impl Copies {
    /// Adds `rows`, if any, for the table and columns of `insert` (an
    /// `INSERT INTO table (columns) ` head).
    fn add<T>(
        &mut self,
        insert: &'static str,
        rows: &[T],
        mut write: impl FnMut(&mut CopyRows, &T) -> Result<(), sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut data = CopyRows::new();
        for row in rows {
            write(&mut data, row)?;
        }
        data.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0.push((insert, std::mem::take(&mut *data.0)));
        Ok(())
    }
}

/// Sends each table's rows by `COPY … FROM STDIN (FORMAT binary)`.
async fn send_copies(conn: &mut sqlx::PgConnection, copies: &Copies) -> Result<(), sqlx::Error> {
    for (insert, data) in &copies.0 {
        let target = insert.trim_start_matches("INSERT INTO ").trim_end();
        let mut copy = conn.copy_in_raw(&format!("COPY {target} FROM STDIN (FORMAT binary)")).await?;
        copy.send(data.as_slice()).await?;
        copy.finish().await?;
    }
    Ok(())
}

/// Rows in PostgreSQL's binary `COPY` format: a signature, then per row
/// its field count and each field as a length and sqlx's own binary
/// encoding of the value (-1 for `NULL`).
struct CopyRows(sqlx::postgres::PgArgumentBuffer);

impl CopyRows {
    fn new() -> Self {
        let mut buffer = sqlx::postgres::PgArgumentBuffer::default();
        buffer.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        // No flags, no header extension.
        buffer.extend_from_slice(&[0; 8]);
        Self(buffer)
    }

    fn start(&mut self, fields: i16) -> &mut Self {
        self.0.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn field<'q, T: sqlx::Encode<'q, sqlx::Postgres>>(&mut self, value: &T) -> Result<&mut Self, sqlx::Error> {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        let length = match value.encode_by_ref(&mut self.0).map_err(sqlx::Error::Encode)? {
            sqlx::encode::IsNull::Yes => -1,
            sqlx::encode::IsNull::No => {
                i32::try_from(self.0.len() - at - 4).map_err(|e| sqlx::Error::Encode(Box::new(e)))?
            }
        };
        self.0[at..at + 4].copy_from_slice(&length.to_be_bytes());
        Ok(self)
    }
}

/// Inserts `rows` on SQLite as multi-row `VALUES` after `head`, in chunks,
/// each row's values pushed by `bind`.
async fn insert_chunks<'a, T>(
    conn: &mut sqlx::SqliteConnection,
    head: &str,
    rows: &'a [T],
    mut bind: impl FnMut(Separated<'_, 'a, Sqlite, &'static str>, &'a T),
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = QueryBuilder::<Sqlite>::new(head);
        sql.push_values(chunk, &mut bind);
        sql.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Applies a folded batch on SQLite: multi-row `VALUES`, in chunks (never
/// encoded for `COPY`: SQLite takes any batch in process).
pub(crate) async fn apply_sqlite(conn: &mut sqlx::SqliteConnection, batch: &Batch) -> Result<(), sqlx::Error> {
    debug_assert!(batch.copies.is_none(), "a batch encoded for COPY holds no rows to insert");
    insert_chunks(conn, INSERT_USERS, &batch.users, |mut b, u| {
        b.push_bind(u.id).push_bind(&u.email).push_bind(&u.display_name).push_bind(u.role);
        b.push_bind(u.disabled).push_bind(&u.password_hash).push_bind(u.created_at).push_bind(u.version);
        b.push_bind(u.disabled_at);
    })
    .await?;
    for (id, change, version) in &batch.user_updates {
        crate::writes::update_user!(conn, id, change, version);
    }
    insert_chunks(conn, INSERT_TICKETS, &batch.tickets, |mut b, t| {
        b.push_bind(t.id).push_bind(&t.title).push_bind(&t.description).push_bind(&t.priority);
        b.push_bind(t.priority_rank).push_bind(&t.status).push_bind(t.reporter_id).push_bind(t.assignee_id);
        b.push_bind(t.created_at).push_bind(t.updated_at).push_bind(t.version);
        b.push_bind(&t.notes_envelope).push_bind(t.deleted_at).push_bind(search_text(t));
    })
    .await?;
    // One prepared statement per patch: SQLite's UPDATE … FROM a VALUES
    // list cost a 16-client update 3 ms of CPU at 30,000 tickets, growing
    // with the table (its profile: page reads and index steps), and an
    // embedded statement costs no round trip.
    for p in &batch.ticket_updates {
        sqlx::query(UPDATE_TICKET_SQLITE)
            .bind(p.id)
            .bind(p.status)
            .bind(p.priority.map(|(name, _)| name))
            .bind(p.priority.map(|(_, rank)| rank))
            .bind(p.assignee.is_some())
            .bind(p.assignee.flatten())
            .bind(&p.notes_envelope)
            .bind(p.deleted_at)
            .bind(p.updated_at)
            .bind(p.version)
            .execute(&mut *conn)
            .await?;
    }
    insert_chunks(conn, INSERT_ATTACHMENTS, &batch.attachments, |mut b, added| {
        let a = &added.row;
        b.push_bind(a.id).push_bind(a.ticket_id).push_bind(&a.filename).push_bind(&a.content_type);
        b.push_bind(a.size).push_bind(&a.sha256).push_bind(a.uploaded_by).push_bind(a.uploaded_at);
        b.push_bind(added.sequence);
    })
    .await?;
    insert_chunks(conn, INSERT_HISTORY, &batch.history, |mut b, h| {
        b.push_bind(h.ticket_id).push_bind(h.sequence).push_bind(h.at).push_bind(h.actor_id);
        b.push_bind(&h.actor_role).push_bind(h.action).push_bind(h.field);
        b.push_bind(&h.from).push_bind(&h.to);
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn rows_born_in_a_batch_absorb_their_changes() {
        let id = Uuid::from_u128(1);
        let old = Uuid::from_u128(2);
        let writes = vec![
            Write::InsertTicket {
                id,
                title: "t".into(),
                description: "d".into(),
                priority: "MEDIUM",
                priority_rank: 2,
                status: "OPEN",
                reporter: Uuid::nil(),
                at: at(1),
                version: 1,
            },
            Write::UpdateTicket { id, change: TicketChange::Status("RESOLVED"), at: at(2), version: 2 },
            Write::UpdateTicket { id: old, change: TicketChange::Priority("HIGH", 3), at: at(3), version: 9 },
            Write::UpdateTicket { id, change: TicketChange::Deleted, at: at(4), version: 3 },
        ];
        let batch = Batch::plan(writes);
        assert_eq!(batch.tickets.len(), 1);
        let ticket = &batch.tickets[0];
        assert_eq!(
            (ticket.status.as_str(), ticket.version, ticket.updated_at, ticket.deleted_at),
            ("RESOLVED", 3, at(4), Some(at(4)))
        );
        assert_eq!(ticket.created_at, at(1));
        let mut patch = TicketPatch::new(old, at(3), 9);
        patch.priority = Some(("HIGH", 3));
        assert_eq!(batch.ticket_updates, vec![patch]);
    }

    #[test]
    fn changes_to_older_rows_fold_into_one_patch_each() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let update = |id, change, seconds, version| Write::UpdateTicket { id, change, at: at(seconds), version };
        let batch = Batch::plan(vec![
            update(a, TicketChange::Status("IN_PROGRESS"), 1, 5),
            update(b, TicketChange::Assignee(Some(Uuid::from_u128(9))), 2, 3),
            update(a, TicketChange::Assignee(None), 3, 6),
            update(a, TicketChange::Status("RESOLVED"), 4, 7),
            update(b, TicketChange::Touched, 5, 4),
        ]);
        let mut first = TicketPatch::new(a, at(4), 7);
        first.status = Some("RESOLVED");
        first.assignee = Some(None);
        let mut second = TicketPatch::new(b, at(5), 4);
        second.assignee = Some(Some(Uuid::from_u128(9)));
        assert_eq!(batch.ticket_updates, vec![first, second]);
    }
}
