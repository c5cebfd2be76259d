//! Long lists answered as JSON text. async-graphql answers with a tree of
//! values (an `IndexMap` per object, a `String` per text) that lives until
//! the answer is written: for a ticket's whole history of 10,000 entries
//! that tree is tens of megabytes, and the allocator keeps much of it after
//! it is freed (measured: the process grew by ~90 MiB while sixteen clients
//! read such a history, one answer built at a time). A field that can
//! write its value as JSON text itself keeps the text here and answers a
//! placeholder; the HTTP handler writes the text in its place.
//!
//! A placeholder is a string no client can make: it starts with a NUL and
//! a random token drawn for the request (when it first keeps a text), and
//! only this request's texts are ever written in place of one. An answer
//! that kept none is written as async-graphql's, without looking for any.

use std::sync::{Mutex, OnceLock};

use async_graphql::{Response, Value};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// The JSON texts one request's fields answered, and the token that marks
/// their placeholders.
#[derive(Debug, Default)]
pub struct Texts {
    token: OnceLock<String>,
    texts: Mutex<Vec<Box<RawValue>>>,
}

impl Texts {
    fn token(&self) -> &str {
        self.token.get_or_init(|| format!("\u{0}json:{}:", uuid::Uuid::new_v4().simple()))
    }

    /// Keeps `text` and answers the value that stands for it.
    pub fn keep(&self, text: Box<RawValue>) -> Value {
        let mut texts = self.texts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        texts.push(text);
        Value::String(format!("{}{}", self.token(), texts.len() - 1))
    }

    /// `response` with each placeholder written as its text, for serde.
    pub fn splice<'a>(&'a self, response: &'a Response) -> Answer<'a> {
        let texts = std::mem::take(&mut *self.texts.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let token = self.token.get().map_or("", String::as_str);
        Answer { response, token, texts }
    }
}

/// A response as async-graphql serialises it (`data`, then `extensions`
/// and `errors` when there are any), placeholders replaced.
pub struct Answer<'a> {
    response: &'a Response,
    token: &'a str,
    texts: Vec<Box<RawValue>>,
}

impl Serialize for Answer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let response = self.response;
        let mut map = serializer.serialize_map(None)?;
        if self.texts.is_empty() {
            map.serialize_entry("data", &response.data)?;
        } else {
            map.serialize_entry("data", &Spliced(&response.data, self))?;
        }
        if !response.extensions.is_empty() {
            map.serialize_entry("extensions", &response.extensions)?;
        }
        if !response.errors.is_empty() {
            map.serialize_entry("errors", &response.errors)?;
        }
        map.end()
    }
}

impl Answer<'_> {
    fn text(&self, value: &str) -> Option<&RawValue> {
        let index: usize = value.strip_prefix(self.token)?.parse().ok()?;
        self.texts.get(index).map(AsRef::as_ref)
    }
}

struct Spliced<'a>(&'a Value, &'a Answer<'a>);

impl Serialize for Spliced<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self(value, answer) = self;
        match value {
            Value::String(text) => match answer.text(text) {
                Some(raw) => raw.serialize(serializer),
                None => serializer.serialize_str(text),
            },
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Spliced(item, answer))?;
                }
                seq.end()
            }
            Value::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for (key, item) in object {
                    map.serialize_entry(key.as_str(), &Spliced(item, answer))?;
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::indexmap::IndexMap;
    use async_graphql::Name;

    use super::*;

    #[test]
    fn placeholders_are_written_as_their_text_and_nothing_else_is() {
        let texts = Texts::default();
        let kept = texts.keep(RawValue::from_string(r#"[{"a":1},{"b":"x"}]"#.into()).unwrap());
        let Value::String(placeholder) = &kept else { unreachable!("a placeholder is a string") };
        let forged = format!("{}7", texts.token());
        let other = Texts::default().keep(RawValue::from_string("0".into()).unwrap());
        let data = Value::Object(IndexMap::from([
            (Name::new("kept"), kept.clone()),
            (Name::new("list"), Value::List(vec![Value::from(1), kept.clone()])),
            (Name::new("forged"), Value::String(forged.clone())),
            (Name::new("other"), other.clone()),
            (Name::new("title"), Value::String("\u{0}json:".into())),
        ]));
        let response = Response::new(data);
        let written = serde_json::to_value(texts.splice(&response)).unwrap();
        let Value::String(other) = other else { unreachable!("a placeholder is a string") };
        assert_eq!(
            written,
            serde_json::json!({
                "data": {
                    "kept": [{ "a": 1 }, { "b": "x" }],
                    "list": [1, [{ "a": 1 }, { "b": "x" }]],
                    "forged": forged,
                    "other": other,
                    "title": "\u{0}json:",
                }
            })
        );
        assert!(placeholder.starts_with('\u{0}'));
    }

    #[test]
    fn an_answer_is_serialised_as_async_graphql_serialises_it() {
        let texts = Texts::default();
        let mut response = Response::new(Value::from_json(serde_json::json!({ "a": [1, "b", null] })).unwrap());
        assert_eq!(serde_json::to_value(texts.splice(&response)).unwrap(), serde_json::to_value(&response).unwrap());
        response.errors.push(async_graphql::ServerError::new("no", None));
        response.extensions.insert("k".into(), Value::from(2));
        assert_eq!(serde_json::to_value(texts.splice(&response)).unwrap(), serde_json::to_value(&response).unwrap());
    }
}
