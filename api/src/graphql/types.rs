//! GraphQL object types over the read models (DESIGN §5). Every field that
//! is not public to all callers checks the viewer here, on the server.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::enum_value;
use async_graphql::{
    Context, ContextSelectionSet, Enum, InputObject, Name, Object, OutputType, Positioned, ServerResult, SimpleObject,
    Upload, Value, ID,
};
use chrono::{DateTime, Utc};
use projections::read::{AttachmentRow, HistoryRow, TicketRow, UserRow, HISTORY_WITH_ROW};
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::{app, caller};
use crate::error::{ApiError, ApiResult};

macro_rules! mirror_enum {
    ($name:ident, $domain:ty, { $($variant:ident),+ }) => {
        #[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl From<$name> for $domain {
            fn from(value: $name) -> Self {
                match value { $($name::$variant => <$domain>::$variant),+ }
            }
        }

        impl From<$domain> for $name {
            fn from(value: $domain) -> Self {
                match value { $(<$domain>::$variant => $name::$variant),+ }
            }
        }

        impl $name {
            fn from_stored(raw: &str) -> ApiResult<Self> {
                <$domain>::parse(raw).map(Self::from).map_err(ApiError::internal)
            }
        }
    };
}

mirror_enum!(Role, domain::values::Role, { Employee, Admin });
mirror_enum!(TicketStatus, domain::values::Status, { Open, InProgress, Resolved });
mirror_enum!(Priority, domain::values::Priority, { Low, Medium, High });

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum TicketOrder {
    #[default]
    CreatedDesc,
    CreatedAsc,
    UpdatedDesc,
    PriorityDesc,
}

impl From<TicketOrder> for projections::read::TicketOrder {
    fn from(order: TicketOrder) -> Self {
        match order {
            TicketOrder::CreatedDesc => Self::CreatedDesc,
            TicketOrder::CreatedAsc => Self::CreatedAsc,
            TicketOrder::UpdatedDesc => Self::UpdatedDesc,
            TicketOrder::PriorityDesc => Self::PriorityDesc,
        }
    }
}

pub struct User(pub UserRow);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    async fn role(&self) -> ApiResult<Role> {
        Role::from_stored(&self.0.role)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Disabled users cannot sign in; visible to admins only.
    async fn disabled(&self, ctx: &Context<'_>) -> Option<bool> {
        caller(ctx).viewer().is_ok_and(|viewer| viewer.is_admin()).then_some(self.0.disabled)
    }
}

async fn user_by_id(ctx: &Context<'_>, id: uuid::Uuid) -> ApiResult<Option<User>> {
    let loader = ctx.data_unchecked::<super::loaders::Users>();
    Ok(loader.load_one(id).await?.map(User))
}

/// A ticket as the API answers it. A selection of plain fields only (the
/// usual list page) is written from the row straight to JSON text, which
/// the HTTP handler splices into the answer (see `spliced`); anything else
/// goes through the resolvers of [`TicketFields`], which these answers must
/// equal (tested). async-graphql resolves every field of an object as a
/// boxed future of its own, which was a fifth of the server's CPU on a
/// page of 50 tickets, and then builds a tree of values (an `IndexMap` per
/// ticket) only to write it out again.
pub struct Ticket(TicketFields);

impl From<TicketRow> for Ticket {
    fn from(row: TicketRow) -> Self {
        Self(TicketFields(row))
    }
}

impl Ticket {
    fn row(&self) -> &TicketRow {
        &self.0 .0
    }
}

/// `value` as JSON text for the handler to splice in, when this request is
/// answered over HTTP (`spliced`) and `value` can be written.
fn as_json_text<T: Serialize>(ctx: &ContextSelectionSet<'_>, value: Option<T>) -> Option<Value> {
    let info = ctx.data_opt::<super::RequestInfo>()?;
    let text = serde_json::value::to_raw_value(&value?).ok()?;
    Some(info.texts.keep(text))
}

/// The fields of `selection` by response key, when every selection is a
/// field without directives or arguments under a key of its own; `None`
/// otherwise (fragments, `@skip`, arguments, merged keys: the resolvers'
/// business). The schema has no extensions, whose field hooks answering
/// without the resolvers would skip: `graphql::limits` checks the parsed
/// request instead.
fn plain_fields(selection: &SelectionSet) -> Option<Vec<(&Name, &Field)>> {
    let mut fields: Vec<(&Name, &Field)> = Vec::with_capacity(selection.items.len());
    for item in &selection.items {
        let Selection::Field(field) = &item.node else { return None };
        let field = &field.node;
        let key = &field.response_key().node;
        if !field.directives.is_empty() || !field.arguments.is_empty() || fields.iter().any(|(k, _)| *k == key) {
            return None;
        }
        fields.push((key, field));
    }
    Some(fields)
}

/// What to write for each response key of `selection`, when every field in
/// it is plain (see [`plain_fields`]) and known to `of`.
fn plan<'a, F>(selection: &'a SelectionSet, of: impl Fn(&'a Field) -> Option<F>) -> Option<Vec<(&'a str, F)>> {
    plain_fields(selection)?.into_iter().map(|(key, field)| Some((key.as_str(), of(field)?))).collect()
}

/// A field of a [`Ticket`] that is read from its row alone, the same for
/// every viewer.
#[derive(Clone, Copy)]
enum TicketField {
    Id,
    Title,
    Description,
    Priority,
    Status,
    CreatedAt,
    UpdatedAt,
    Version,
}

impl TicketField {
    fn of(field: &Field) -> Option<Self> {
        Some(match field.name.node.as_str() {
            "id" => Self::Id,
            "title" => Self::Title,
            "description" => Self::Description,
            "priority" => Self::Priority,
            "status" => Self::Status,
            "createdAt" => Self::CreatedAt,
            "updatedAt" => Self::UpdatedAt,
            "version" => Self::Version,
            _ => return None,
        })
    }
}

/// A field that is written from `T` alone, as its resolver answers it
/// (see [`Plain`]).
trait PlainField<T> {
    fn write<M: SerializeMap>(&self, key: &str, from: T, map: &mut M) -> Result<(), M::Error>;
}

/// The object `fields` ask of `from`, each under its response key.
struct Plain<'a, T, F> {
    from: T,
    fields: &'a [(&'a str, F)],
}

impl<T: Copy, F: PlainField<T>> Serialize for Plain<'_, T, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, field) in self.fields {
            field.write(key, self.from, &mut map)?;
        }
        map.end()
    }
}

impl PlainField<&TicketRow> for TicketField {
    fn write<M: SerializeMap>(&self, key: &str, row: &TicketRow, map: &mut M) -> Result<(), M::Error> {
        let unknown = |_| M::Error::custom("a stored value is unknown");
        match self {
            Self::Id => map.serialize_entry(key, &row.id),
            Self::Title => map.serialize_entry(key, &row.title),
            Self::Description => map.serialize_entry(key, &row.description),
            Self::Priority => {
                map.serialize_entry(key, &enum_value(Priority::from_stored(&row.priority).map_err(unknown)?))
            }
            Self::Status => {
                map.serialize_entry(key, &enum_value(TicketStatus::from_stored(&row.status).map_err(unknown)?))
            }
            Self::CreatedAt => map.serialize_entry(key, &row.created_at.to_rfc3339()),
            Self::UpdatedAt => map.serialize_entry(key, &row.updated_at.to_rfc3339()),
            Self::Version => map.serialize_entry(key, &TicketFields::version_of(row)),
        }
    }
}

impl OutputType for Ticket {
    fn type_name() -> Cow<'static, str> {
        TicketFields::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        TicketFields::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let fields = plan(&ctx.item.node, TicketField::of);
        let plain = fields.as_deref().map(|fields| Plain { from: self.row(), fields });
        match as_json_text(ctx, plain) {
            Some(value) => Ok(value),
            None => OutputType::resolve(&self.0, ctx, field).await,
        }
    }
}

/// A page of tickets, answered like [`Ticket`]: written straight from the
/// rows when its edges, nodes and page info ask for plain fields only (the
/// usual list page), through async-graphql's `Connection` otherwise.
pub struct TicketPage(pub Connection<String, Ticket>);

/// A plain field of a page of tickets.
enum PageField<'a> {
    Edges(Vec<(&'a str, EdgeField<'a>)>),
    PageInfo(Vec<(&'a str, InfoField)>),
}

enum EdgeField<'a> {
    Cursor,
    Node(Vec<(&'a str, TicketField)>),
}

#[derive(Clone, Copy)]
enum InfoField {
    HasPreviousPage,
    HasNextPage,
    StartCursor,
    EndCursor,
}

impl<'a> PageField<'a> {
    fn of(field: &'a Field) -> Option<Self> {
        let selection = &field.selection_set.node;
        Some(match field.name.node.as_str() {
            "edges" => Self::Edges(plan(selection, EdgeField::of)?),
            "pageInfo" => Self::PageInfo(plan(selection, InfoField::of)?),
            _ => return None,
        })
    }
}

impl<'a> EdgeField<'a> {
    fn of(field: &'a Field) -> Option<Self> {
        Some(match field.name.node.as_str() {
            "cursor" => Self::Cursor,
            "node" => Self::Node(plan(&field.selection_set.node, TicketField::of)?),
            _ => return None,
        })
    }
}

impl InfoField {
    fn of(field: &Field) -> Option<Self> {
        Some(match field.name.node.as_str() {
            "hasPreviousPage" => Self::HasPreviousPage,
            "hasNextPage" => Self::HasNextPage,
            "startCursor" => Self::StartCursor,
            "endCursor" => Self::EndCursor,
            _ => return None,
        })
    }
}

type Page = Connection<String, Ticket>;

impl PlainField<&Page> for PageField<'_> {
    fn write<M: SerializeMap>(&self, key: &str, page: &Page, map: &mut M) -> Result<(), M::Error> {
        match self {
            Self::Edges(fields) => map.serialize_entry(key, &PlainEdges { page, fields }),
            Self::PageInfo(fields) => map.serialize_entry(key, &Plain { from: page, fields }),
        }
    }
}

struct PlainEdges<'a> {
    page: &'a Page,
    fields: &'a [(&'a str, EdgeField<'a>)],
}

impl Serialize for PlainEdges<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.fields;
        serializer.collect_seq(self.page.edges.iter().map(|edge| Plain { from: edge, fields }))
    }
}

impl PlainField<&Edge<String, Ticket, EmptyFields>> for EdgeField<'_> {
    fn write<M: SerializeMap>(
        &self,
        key: &str,
        edge: &Edge<String, Ticket, EmptyFields>,
        map: &mut M,
    ) -> Result<(), M::Error> {
        match self {
            Self::Cursor => map.serialize_entry(key, &edge.cursor),
            Self::Node(fields) => map.serialize_entry(key, &Plain { from: edge.node.row(), fields }),
        }
    }
}

impl PlainField<&Page> for InfoField {
    fn write<M: SerializeMap>(&self, key: &str, page: &Page, map: &mut M) -> Result<(), M::Error> {
        match self {
            Self::HasPreviousPage => map.serialize_entry(key, &page.has_previous_page),
            Self::HasNextPage => map.serialize_entry(key, &page.has_next_page),
            Self::StartCursor => map.serialize_entry(key, &page.edges.first().map(|e| &e.cursor)),
            Self::EndCursor => map.serialize_entry(key, &page.edges.last().map(|e| &e.cursor)),
        }
    }
}

impl OutputType for TicketPage {
    fn type_name() -> Cow<'static, str> {
        <Connection<String, Ticket> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Connection<String, Ticket> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let fields = plan(&ctx.item.node, PageField::of);
        let plain = fields.as_deref().map(|fields| Plain { from: &self.0, fields });
        match as_json_text(ctx, plain) {
            Some(value) => Ok(value),
            None => OutputType::resolve(&self.0, ctx, field).await,
        }
    }
}

/// The `Ticket` type's resolvers (see [`Ticket`]).
pub struct TicketFields(TicketRow);

impl TicketFields {
    fn version_of(row: &TicketRow) -> i32 {
        i32::try_from(row.version).unwrap_or(i32::MAX)
    }
}

#[Object(name = "Ticket")]
impl TicketFields {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn priority(&self) -> ApiResult<Priority> {
        Priority::from_stored(&self.0.priority)
    }
    async fn status(&self) -> ApiResult<TicketStatus> {
        TicketStatus::from_stored(&self.0.status)
    }
    async fn reporter(&self, ctx: &Context<'_>) -> ApiResult<User> {
        user_by_id(ctx, self.0.reporter_id).await?.ok_or_else(|| ApiError::internal("reporter missing"))
    }
    async fn assignee(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        match self.0.assignee_id {
            Some(id) => user_by_id(ctx, id).await,
            None => Ok(None),
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The aggregate's sequence: pass it back as `expectedVersion`.
    async fn version(&self) -> i32 {
        Self::version_of(&self.0)
    }
    /// Set when an admin deleted the ticket; only admins see deleted tickets.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
    /// Decrypted for admins; always `null` for everyone else.
    async fn confidential_notes(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let viewer = caller(ctx).viewer()?;
        app(ctx).confidential_notes(viewer, &self.0).await
    }
    #[graphql(complexity = "5 * child_complexity")]
    async fn attachments(&self, ctx: &Context<'_>) -> ApiResult<Vec<Attachment>> {
        let loader = ctx.data_unchecked::<super::loaders::Attachments>();
        Ok(loader.load_one(self.0.id).await?.unwrap_or_default().into_iter().map(Attachment).collect())
    }
    /// Every change, oldest first, built from the event stream. Changes to
    /// the confidential notes are admins' business: others do not see them.
    /// `after` (an entry's `sequence`) and `first` (1 to 1,000) page through
    /// a long history; without them the whole history is returned.
    #[graphql(complexity = "5 * child_complexity")]
    async fn history(&self, ctx: &Context<'_>, after: Option<i32>, first: Option<i32>) -> ApiResult<History> {
        let admin = caller(ctx).viewer()?.is_admin();
        let after = i64::from(after.unwrap_or(0));
        if after < 0 {
            return Err(ApiError::BadInput("after must not be negative".into()));
        }
        let first = match first {
            None => None,
            Some(n) if (1..=MAX_HISTORY_PAGE).contains(&n) => usize::try_from(n).ok(),
            Some(_) => return Err(ApiError::BadInput(format!("first must be between 1 and {MAX_HISTORY_PAGE}"))),
        };
        let ticket = &self.0;
        let rows: Arc<Vec<HistoryRow>> = if (first.is_some() || after > 0) && ticket.version > HISTORY_WITH_ROW {
            // A page of a long history is read by itself, in SQL, once the
            // budget for long histories admits what it can hold.
            let left = usize::try_from(ticket.version - after.min(ticket.version)).unwrap_or(usize::MAX);
            super::admit_history(ctx, first.map_or(left, |first| first.min(left))).await;
            Arc::new(app(ctx).read.history_page(ticket.id, after, first, admin).await?)
        } else {
            let loader = ctx.data_unchecked::<super::loaders::Histories>();
            loader.load_one(ticket.id).await?.unwrap_or_default()
        };
        let mut history = History { rows, after, first: first.unwrap_or(usize::MAX), admin, actors: HashMap::new() };
        if ctx.look_ahead().field("actor").exists() {
            let ids: HashSet<Uuid> = history.rows().filter_map(|row| row.actor_id).collect();
            let found = ctx.data_unchecked::<super::loaders::Users>().load_many(ids).await?;
            history.actors = found.into_iter().map(|(id, user)| (id, Arc::new(user))).collect();
        }
        Ok(history)
    }
}

/// Evidence attached to a ticket.
pub struct Attachment(pub AttachmentRow);

#[Object]
impl Attachment {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Cleaned for display; storage never uses it.
    async fn filename(&self) -> &str {
        &self.0.filename
    }
    /// Decided from the file's bytes.
    async fn content_type(&self) -> &str {
        &self.0.content_type
    }
    async fn size(&self) -> i64 {
        self.0.size
    }
    async fn sha256(&self) -> &str {
        &self.0.sha256
    }
    async fn uploaded_by(&self, ctx: &Context<'_>) -> ApiResult<User> {
        let uploader = self.0.uploaded_by.ok_or_else(|| ApiError::internal("uploader missing"))?;
        user_by_id(ctx, uploader).await?.ok_or_else(|| ApiError::internal("uploader missing"))
    }
    async fn uploaded_at(&self) -> DateTime<Utc> {
        self.0.uploaded_at
    }
    /// Download with the same Bearer token.
    async fn url(&self) -> String {
        format!("/attachments/{}", self.0.id)
    }
}

/// A ticket's history as the API answers it: written from the rows
/// straight to JSON text when every entry asks for plain fields only (the
/// usual detail view; the HTTP handler splices the text into the answer,
/// see `spliced`), through the resolvers of [`AuditEntry`] otherwise.
/// async-graphql resolves a list as one future per entry and each field as
/// a boxed future of its own (an 8,500-entry history cost ~50 ms of CPU),
/// and even a tree of its values built at once held tens of megabytes
/// until the answer was written. The rows are the ones the loader holds
/// (or a page read for this field), shared, not copied.
pub struct History {
    rows: Arc<Vec<HistoryRow>>,
    /// Entries after this sequence…
    after: i64,
    /// …at most this many…
    first: usize,
    /// …and changes to the confidential notes only for admins.
    admin: bool,
    actors: HashMap<Uuid, Arc<UserRow>>,
}

impl History {
    /// The entries answered, oldest first.
    fn rows(&self) -> impl Iterator<Item = &HistoryRow> {
        self.rows.iter().filter(|row| row.sequence > self.after && row.seen_by(self.admin)).take(self.first)
    }

    fn actor(&self, row: &HistoryRow) -> Option<&Arc<UserRow>> {
        row.actor_id.and_then(|id| self.actors.get(&id))
    }
}

/// A plain field of an [`AuditEntry`].
enum EntryField<'a> {
    Sequence,
    At,
    Action,
    Field,
    From,
    To,
    Actor(Vec<(&'a str, UserField)>),
}

/// A field of a [`User`] that is the same for every viewer.
#[derive(Clone, Copy)]
enum UserField {
    Id,
    Email,
    DisplayName,
    Role,
    CreatedAt,
}

impl<'a> EntryField<'a> {
    fn of(field: &'a Field) -> Option<Self> {
        Some(match field.name.node.as_str() {
            "sequence" => Self::Sequence,
            "at" => Self::At,
            "action" => Self::Action,
            "field" => Self::Field,
            "from" => Self::From,
            "to" => Self::To,
            "actor" => Self::Actor(plan(&field.selection_set.node, UserField::of)?),
            _ => return None,
        })
    }
}

impl UserField {
    fn of(field: &Field) -> Option<Self> {
        Some(match field.name.node.as_str() {
            "id" => Self::Id,
            "email" => Self::Email,
            "displayName" => Self::DisplayName,
            "role" => Self::Role,
            "createdAt" => Self::CreatedAt,
            _ => return None,
        })
    }
}

struct PlainEntries<'a> {
    history: &'a History,
    fields: &'a [(&'a str, EntryField<'a>)],
}

impl Serialize for PlainEntries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (history, fields) = (self.history, self.fields);
        let entry = |row| Plain { from: (row, history.actor(row).map(AsRef::as_ref)), fields };
        serializer.collect_seq(history.rows().map(entry))
    }
}

impl PlainField<(&HistoryRow, Option<&UserRow>)> for EntryField<'_> {
    fn write<M: SerializeMap>(
        &self,
        key: &str,
        (row, actor): (&HistoryRow, Option<&UserRow>),
        map: &mut M,
    ) -> Result<(), M::Error> {
        match self {
            Self::Sequence => map.serialize_entry(key, &AuditEntry::sequence_of(row)),
            Self::At => map.serialize_entry(key, &row.at.to_rfc3339()),
            Self::Action => map.serialize_entry(key, &row.action),
            Self::Field => map.serialize_entry(key, &row.field),
            Self::From => map.serialize_entry(key, &row.from_value),
            Self::To => map.serialize_entry(key, &row.to_value),
            Self::Actor(fields) => map.serialize_entry(key, &actor.map(|user| Plain { from: user, fields })),
        }
    }
}

impl PlainField<&UserRow> for UserField {
    fn write<M: SerializeMap>(&self, key: &str, user: &UserRow, map: &mut M) -> Result<(), M::Error> {
        match self {
            Self::Id => map.serialize_entry(key, &user.id),
            Self::Email => map.serialize_entry(key, &user.email),
            Self::DisplayName => map.serialize_entry(key, &user.display_name),
            Self::Role => {
                let role = Role::from_stored(&user.role).map_err(|_| M::Error::custom("a stored role is unknown"))?;
                map.serialize_entry(key, &enum_value(role))
            }
            Self::CreatedAt => map.serialize_entry(key, &user.created_at.to_rfc3339()),
        }
    }
}

impl OutputType for History {
    fn type_name() -> Cow<'static, str> {
        <Vec<AuditEntry> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<AuditEntry> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<AuditEntry> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let fields = plan(&ctx.item.node, EntryField::of);
        let plain = fields.as_deref().map(|fields| PlainEntries { history: self, fields });
        if let Some(value) = as_json_text(ctx, plain) {
            return Ok(value);
        }
        let entries: Vec<AuditEntry> =
            self.rows().map(|row| AuditEntry(row.clone(), self.actor(row).cloned())).collect();
        OutputType::resolve(&entries, ctx, field).await
    }
}

/// One history line and, when asked for, its actor (resolved once for the
/// whole history rather than once per line, and shared by its lines).
pub struct AuditEntry(pub HistoryRow, pub Option<Arc<UserRow>>);

/// The most history entries one page may ask for.
const MAX_HISTORY_PAGE: i32 = 1000;

impl AuditEntry {
    fn sequence_of(row: &HistoryRow) -> i32 {
        i32::try_from(row.sequence).unwrap_or(i32::MAX)
    }
}

#[Object]
impl AuditEntry {
    async fn sequence(&self) -> i32 {
        Self::sequence_of(&self.0)
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn actor(&self) -> Option<User> {
        self.1.as_deref().cloned().map(User)
    }
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }
    async fn from(&self) -> Option<&str> {
        self.0.from_value.as_deref()
    }
    async fn to(&self) -> Option<&str> {
        self.0.to_value.as_deref()
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i32,
    pub user: User,
}

impl From<crate::service::accounts::Session> for AuthPayload {
    fn from(session: crate::service::accounts::Session) -> Self {
        AuthPayload {
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            expires_in: i32::try_from(session.expires_in).unwrap_or(i32::MAX),
            user: User(session.user),
        }
    }
}

#[derive(InputObject)]
pub struct RegisterInput {
    pub email: String,
    #[graphql(secret)]
    pub password: String,
    pub display_name: String,
}

#[derive(InputObject)]
pub struct CreateTicketInput {
    pub title: String,
    pub description: String,
    /// Evidence files (GraphQL multipart request spec).
    pub attachments: Option<Vec<Upload>>,
}

#[derive(InputObject, Default)]
pub struct UpdateTicketInput {
    pub status: Option<TicketStatus>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<ID>,
    pub clear_assignee: Option<bool>,
    #[graphql(secret)]
    pub confidential_notes: Option<String>,
}

#[derive(InputObject, Default)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<ID>,
    pub reporter_id: Option<ID>,
    pub search: Option<String>,
    /// Admins only: include deleted tickets.
    pub include_deleted: Option<bool>,
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::DocumentOperations;
    use chrono::TimeZone;

    use super::*;

    fn ticket() -> Ticket {
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 9, 30, 0).unwrap();
        Ticket::from(TicketRow {
            id: uuid::Uuid::nil(),
            title: "VPN".into(),
            description: "down".into(),
            priority: "HIGH".into(),
            priority_rank: 3,
            status: "OPEN".into(),
            reporter_id: uuid::Uuid::nil(),
            assignee_id: None,
            created_at: at,
            updated_at: at,
            version: 2,
            notes_envelope: None,
            deleted_at: None,
        })
    }

    /// The selection set of `{ … }`.
    fn answer(selection: &str) -> Option<serde_json::Value> {
        let document = parse_query(format!("{{ {selection} }}")).unwrap();
        let DocumentOperations::Single(operation) = document.operations else { unreachable!("one operation") };
        let fields = plan(&operation.node.selection_set.node, TicketField::of)?;
        Some(serde_json::to_value(Plain { from: ticket().row(), fields: &fields }).unwrap())
    }

    fn history() -> History {
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 9, 30, 0).unwrap();
        let admin = UserRow {
            id: uuid::Uuid::nil(),
            email: "admin@example.com".into(),
            display_name: "Ada".into(),
            role: "ADMIN".into(),
            disabled: false,
            password_hash: "$argon2id$".into(),
            created_at: at,
            version: 1,
            disabled_at: None,
        };
        let row = |sequence, actor_id, action: &str, to: Option<&str>| HistoryRow {
            sequence,
            at,
            actor_id,
            actor_role: None,
            action: action.into(),
            field: to.map(|_| "status".into()),
            from_value: None,
            to_value: to.map(Into::into),
        };
        History {
            rows: Arc::new(vec![row(1, Some(admin.id), "created", None), row(2, None, "updated", Some("RESOLVED"))]),
            after: 0,
            first: usize::MAX,
            admin: true,
            actors: HashMap::from([(admin.id, Arc::new(admin))]),
        }
    }

    /// The selection set of `{ … }`.
    fn entries(selection: &str) -> Option<Value> {
        let document = parse_query(format!("{{ {selection} }}")).unwrap();
        let DocumentOperations::Single(operation) = document.operations else { unreachable!("one operation") };
        let fields = plan(&operation.node.selection_set.node, EntryField::of)?;
        Some(
            Value::from_json(serde_json::to_value(PlainEntries { history: &history(), fields: &fields }).unwrap())
                .unwrap(),
        )
    }

    #[test]
    fn only_plain_history_selections_are_answered_from_the_rows() {
        let value = entries("sequence at action field to who: actor { displayName role }").expect("plain fields");
        assert_eq!(
            value.into_json().unwrap(),
            serde_json::json!([
                { "sequence": 1, "at": "2026-11-27T09:30:00+00:00", "action": "created", "field": null, "to": null,
                  "who": { "displayName": "Ada", "role": "ADMIN" } },
                { "sequence": 2, "at": "2026-11-27T09:30:00+00:00", "action": "updated", "field": "status",
                  "to": "RESOLVED", "who": null },
            ])
        );
        for other in [
            "... on AuditEntry { sequence }",
            "sequence @skip(if: false)",
            "sequence sequence",
            "__typename",
            "actor { disabled }",
            "actor { ... on User { id } }",
        ] {
            assert_eq!(entries(other), None, "{other}");
        }
    }

    // The end-to-end test compares both ways of answering; this one makes
    // sure the short way is taken at all, and only for plain selections.
    #[test]
    fn only_plain_selections_are_answered_from_the_row() {
        let value = answer("id v: version status createdAt").expect("plain fields");
        assert_eq!(
            value,
            serde_json::json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "v": 2,
                "status": "OPEN",
                "createdAt": "2026-11-27T09:30:00+00:00",
            })
        );
        for other in [
            "... on Ticket { id }",
            "id @include(if: true)",
            "history(first: 1) { sequence }",
            "id reporter { id }",
            "id id",
            "__typename",
            "confidentialNotes",
        ] {
            assert_eq!(answer(other), None, "{other}");
        }
    }
}
