//! The read models as text, row by row, so the tables a crashed server left
//! can be compared with what `tickets rebuild-projections` makes of the
//! same events.

use std::collections::BTreeMap;

use commands::db::Db;

use crate::process::{run_command, Config};

/// Every table the projector writes (the checkpoint aside).
const TABLES: [&str; 4] = ["users", "tickets", "ticket_history", "attachments"];

/// Each read-model table's rows, printed and sorted.
pub type Dump = BTreeMap<&'static str, Vec<String>>;

pub async fn dump(db: &Db) -> Dump {
    let mut dump = Dump::new();
    for table in TABLES {
        let rows = match db {
            Db::Postgres(pool) => {
                sqlx::query_scalar::<_, String>(&format!("SELECT t::text FROM {table} t ORDER BY 1"))
                    .fetch_all(pool)
                    .await
            }
            Db::Sqlite(pool) => {
                let columns: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))
                        .fetch_all(pool)
                        .await
                        .expect("the table's columns");
                let row = columns.iter().map(|c| format!("quote({c})")).collect::<Vec<_>>().join(" || ',' || ");
                sqlx::query_scalar::<_, String>(&format!("SELECT {row} FROM {table} ORDER BY 1")).fetch_all(pool).await
            }
        };
        dump.insert(table, rows.unwrap_or_else(|e| panic!("cannot read {table}: {e}")));
    }
    dump
}

/// Dumps the read models, rebuilds them from zero with the CLI (no server
/// may be running on the store), and panics unless both are the same.
/// Returns how many rows were compared.
pub async fn assert_equal_to_rebuild(db: &Db, config: &Config) -> usize {
    let before = dump(db).await;
    let said = run_command(config, &["rebuild-projections"]).await;
    assert!(said.contains("rebuilt read models"), "the rebuild reports: {said}");
    let after = dump(db).await;
    for table in TABLES {
        let (left, right) = (&before[table], &after[table]);
        if left != right {
            let only_before: Vec<&String> = left.iter().filter(|row| !right.contains(row)).take(3).collect();
            let only_after: Vec<&String> = right.iter().filter(|row| !left.contains(row)).take(3).collect();
            panic!(
                "{table} differs from its rebuild ({} rows before, {} after); only before: {only_before:?}; \
                 only after: {only_after:?}",
                left.len(),
                right.len()
            );
        }
    }
    before.values().map(Vec::len).sum()
}
