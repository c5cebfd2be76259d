//! Rows decoded by column position.
//!
//! sqlx's derived `FromRow` looks every column up by name (a SipHash of
//! the name per column) and checks its type, for every row. A page of 50
//! tickets decodes 650 columns, and the look-ups cost it about a twentieth
//! of the server's CPU; a rebuild decodes 9,000,000 (2 % of its time).
//! `by_position!` declares a row struct whose fields are the query's
//! columns in order: release builds take each column at its position,
//! unchecked; debug builds (every test) check its name and type as the
//! derived decoder would, so a query that selects its columns in another
//! order fails every test that reads it.

/// Column `index` of `row`, which the query names `name`.
pub(crate) fn column<'r, R, T>(row: &'r R, index: usize, name: &str) -> Result<T, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if cfg!(debug_assertions) {
        if row.columns().get(index).map(sqlx::Column::name) != Some(name) {
            return Err(sqlx::Error::ColumnNotFound(format!("{name} at {index}")));
        }
        row.try_get(index)
    } else {
        row.try_get_unchecked(index)
    }
}

/// A struct whose fields are a query's columns, in order, with a
/// `sqlx::FromRow` that decodes them by position (see the module).
macro_rules! by_position {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident: $ty:ty),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),+
        }

        impl<'r, R> sqlx::FromRow<'r, R> for $name
        where
            R: sqlx::Row,
            usize: sqlx::ColumnIndex<R>,
            $($ty: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,)+
        {
            fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
                let mut index = 0;
                Ok(Self {
                    $($field: {
                        index += 1;
                        $crate::by_position::column(row, index - 1, stringify!($field))?
                    }),+
                })
            }
        }
    };
}
pub(crate) use by_position;
