//! A `jsonb` value carried as its JSON text, written and read without a `serde_json::Value`
//! tree in between. A tree costs an allocation per node to build and another walk to encode;
//! the change feed's payloads (written once by the worker, read once by the relay) need
//! neither: the writer serializes its typed value straight to text, and the relay splices the
//! stored text into the message body.
//!
//! On the wire (PostgreSQL's binary format) a `jsonb` is a version byte, `1`, then the JSON
//! text, so both directions are a copy.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Jsonb;
use serde::Serialize;
use std::io::Write;

/// The only `jsonb` binary format version PostgreSQL has.
const JSONB_VERSION: u8 = 1;

/// A JSON document as text, stored in and loaded from a `jsonb` column.
#[derive(Debug, Clone, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Jsonb)]
pub struct JsonbText(String);

impl JsonbText {
    /// Serializes `value` (compact).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Text as PostgreSQL might hand it back (not checked: tests only).
    #[cfg(test)]
    pub(crate) fn unchecked(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl ToSql<Jsonb, Pg> for JsonbText {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[JSONB_VERSION])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Jsonb, Pg> for JsonbText {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((&JSONB_VERSION, text)) => Ok(Self(std::str::from_utf8(text)?.to_owned())),
            Some((version, _)) => Err(format!("unsupported jsonb version {version}").into()),
            None => Err("empty jsonb value".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_compactly() {
        let text = JsonbText::of(&serde_json::json!({"a": [1, 2], "b": null}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text.as_str(), r#"{"a":[1,2],"b":null}"#);
    }
}
