//! Events and snapshots as `json`: the text as it was written.
//!
//! PostgreSQL's `jsonb` is parsed into a tree on the way in and printed
//! back to text on the way out; nothing here queries inside an event, so
//! that was all cost. The projector reads every event as text, and turning
//! a million `jsonb` values back into text took the reading backend 2.5 s
//! of CPU more than copying the same `json` out (a `COPY` of both, 3.5 s
//! against 1.0 s). sqlx binds a `serde_json::Value` as `jsonb`, which a
//! `json` column would take only through a cast that parses it twice, so
//! the stores are written through this type, bound as `json` itself.

use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo};
use sqlx::{Encode, Postgres, Sqlite, Type};

/// A JSON value bound as PostgreSQL's `json` (SQLite: text).
#[derive(Debug, Clone, Copy)]
pub struct JsonText<'a>(pub &'a Value);

/// `json`'s type id, fixed in PostgreSQL's catalogue.
const JSON_OID: Oid = Oid(114);

impl Type<Postgres> for JsonText<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(JSON_OID)
    }
}

impl Encode<'_, Postgres> for JsonText<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        serde_json::to_writer(&mut **buf, self.0)?;
        Ok(IsNull::No)
    }
}

impl Type<Sqlite> for JsonText<'_> {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for JsonText<'_> {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(serde_json::to_string(self.0)?, buf)
    }
}
