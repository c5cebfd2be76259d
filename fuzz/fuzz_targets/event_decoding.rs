//! Events and snapshots as the store reads them back: arbitrary bytes into
//! both aggregates' events (the projector's `serde_json::from_str`, the
//! write side's `EventEnvelope::try_from`) and snapshots, and into the
//! sealed-field and wrapped-key envelopes. Nothing may panic; whatever
//! decodes must encode and decode again to the same value; and no
//! envelope opens under a key it was not sealed with.
#![no_main]

use std::fmt::Debug;
use std::sync::LazyLock;

use commands::cipher::{DataKey, MasterKeys, WrappedKey};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};
use domain::account::{Account, AccountEvent};
use domain::sealed::{SealedField, SealedText};
use domain::ticket::{Ticket, TicketEvent};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

const FIELDS: [SealedField; 5] = [
    SealedField::Title,
    SealedField::Description,
    SealedField::ConfidentialNotes,
    SealedField::AttachmentName,
    SealedField::DeletionReason,
];

/// One ticket's keys for the whole run: the data key is drawn at random,
/// so no input can have been sealed under it.
struct Keys {
    master: MasterKeys,
    data: DataKey,
    ticket: Uuid,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let master = MasterKeys::parse("fuzz:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").expect("a master key");
    let ticket = Uuid::from_u128(1);
    let (data, _) = master.new_data_key(ticket);
    Keys { master, data, ticket }
});

fuzz_target!(|data: &[u8]| {
    round_trip::<TicketEvent>(data);
    round_trip::<AccountEvent>(data);
    round_trip::<Ticket>(data);
    round_trip::<Account>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        sealed_round_trip(text);
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    stored::<Ticket>(&value);
    stored::<Account>(&value);
    envelopes(value);
});

/// Decodes `data` as the projector does; anything that decodes must
/// survive encoding, as text and as the `Value` the write side binds.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) {
    let Ok(decoded) = serde_json::from_slice::<T>(data) else { return };
    let text = serde_json::to_vec(&decoded).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("{decoded:?} encoded as {} does not decode: {e}", String::from_utf8_lossy(&text)));
    assert_eq!(again, decoded, "text round trip");
    let value = serde_json::to_value(&decoded).expect("a decoded value encodes");
    let again: T = serde_json::from_value(value).expect("its value decodes");
    assert_eq!(again, decoded, "value round trip");
}

/// The write side's decoding: an event row's payload and metadata, and a
/// snapshot row's aggregate.
fn stored<A: Aggregate + DeserializeOwned + Serialize + PartialEq + Debug>(value: &Value) {
    let row = |payload: Value, metadata: Value| {
        SerializedEvent::new("id".into(), 1, A::TYPE.into(), "Any".into(), "1".into(), payload, metadata)
    };
    if let Ok(envelope) = EventEnvelope::<A>::try_from(row(value.clone(), json!({}))) {
        let payload = serde_json::to_value(&envelope.payload).expect("an event encodes");
        let again = EventEnvelope::<A>::try_from(row(payload, json!({}))).expect("its encoding decodes");
        assert_eq!(again.payload, envelope.payload);
    }
    let _ = EventEnvelope::<A>::try_from(row(Value::Null, value.clone()));
    if let Ok(snapshot) = serde_json::from_value::<A>(value.clone()) {
        let again: A = serde_json::from_value(serde_json::to_value(&snapshot).expect("a snapshot encodes"))
            .expect("its encoding decodes");
        assert_eq!(again, snapshot);
    }
}

/// Envelopes from outside never open: not under another ticket's data
/// key, not under a master key they were not wrapped with.
fn envelopes(value: Value) {
    let keys = &*KEYS;
    if let Ok(sealed) = serde_json::from_value::<SealedText>(value.clone()) {
        for field in FIELDS {
            assert!(keys.data.open(keys.ticket, field, &sealed).is_err(), "{sealed:?} opened as {field:?}");
        }
    }
    if let Ok(wrapped) = serde_json::from_value::<WrappedKey>(value) {
        assert!(keys.master.unwrap(keys.ticket, &wrapped).is_err(), "{wrapped:?} unwrapped");
    }
}

/// Any text sealed opens to itself, and its digest is the one `seal` stored.
fn sealed_round_trip(text: &str) {
    let keys = &*KEYS;
    for field in FIELDS {
        let sealed = keys.data.seal(keys.ticket, field, text);
        assert_eq!(keys.data.open(keys.ticket, field, &sealed).expect("opens"), text);
        assert_eq!(sealed.digest, keys.data.digest(field, text));
    }
}
