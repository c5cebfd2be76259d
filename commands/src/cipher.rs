//! Envelope encryption for the free text kept in events (DESIGN §6).
//!
//! Every ticket has its own random 32-byte **data key**. Text fields are
//! sealed under it; the data key itself is stored only *wrapped* by a
//! **master key** named by a key id (`kid`). Master keys come from
//! `TICKETS_MASTER_KEYS` (`kid:base64,kid2:base64`, first is active), so
//! rotating a master key means re-wrapping data keys, never rewriting events;
//! destroying a ticket's wrapped data key erases its text (crypto-shredding).
//!
//! # Layouts
//!
//! Both envelopes are standard padded base64 of
//! `version (1 byte, 0x01) || nonce (24 random bytes) || XChaCha20-Poly1305
//! ciphertext || tag (16 bytes)`.
//!
//! | envelope | key | AAD |
//! |---|---|---|
//! | [`WrappedKey::ciphertext`] | master key `kid` | `b"tickets/datakey/v1/" \|\| ticket_id (16 raw bytes)` |
//! | [`SealedText::ciphertext`] | data key | `b"tickets/field/" \|\| version (1) \|\| ticket_id (16 raw bytes) \|\| field name (UTF-8)` |
//!
//! The ticket id is always its 16 raw bytes, so every AAD splits one way
//! only; the field name is the tail. A ciphertext moved to another ticket or
//! field, or a wrapped key moved to another ticket, fails to open.
//!
//! [`SealedText::digest`] is standard base64 of the first 16 bytes of
//! `HMAC-SHA256(digest_key, field name || 0x00 || plaintext)` where
//! `digest_key = HMAC-SHA256(data_key, b"tickets/digest/v1")`. Equal text in
//! the same field of the same ticket gives equal digests; without the data
//! key a digest says nothing.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use domain::sealed::{SealedField, SealedText};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

const VERSION: u8 = 0x01;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const DIGEST_LEN: usize = 16;
const MAX_KID_LEN: usize = 32;
const DATAKEY_AAD_PREFIX: &[u8] = b"tickets/datakey/v1/";
const FIELD_AAD_PREFIX: &[u8] = b"tickets/field/";
const DIGEST_KEY_LABEL: &[u8] = b"tickets/digest/v1";

/// Why keys could not be parsed or an envelope could not be opened.
///
/// Messages name key ids and positions, never key bytes or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("no master keys given")]
    NoKeys,
    #[error("master key entry {index} is not of the form kid:base64")]
    MalformedEntry { index: usize },
    #[error("master key entry {index} has an invalid key id (1 to 32 of A-Z a-z 0-9 _ -)")]
    InvalidKid { index: usize },
    #[error("master key {kid:?} is not valid base64")]
    BadBase64 { kid: String },
    #[error("master key {kid:?} must be 32 bytes, got {len}")]
    BadKeyLength { kid: String, len: usize },
    #[error("master key id {kid:?} is given twice")]
    DuplicateKid { kid: String },
    #[error("no master key with id {kid:?}")]
    UnknownKid { kid: String },
    #[error("malformed envelope")]
    Malformed,
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    #[error("decryption failed: wrong key, wrong ticket or field, or tampered data")]
    Decrypt,
}

struct MasterKey {
    kid: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

/// The master keys, first one active. Built once at start-up.
pub struct MasterKeys {
    keys: Vec<MasterKey>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("MasterKeys").field("kids", &kids).finish_non_exhaustive()
    }
}

/// A data key wrapped under the master key `kid`; safe to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub kid: String,
    /// Standard base64 of `version || nonce || ciphertext+tag`.
    pub ciphertext: String,
}

/// One ticket's data key, zeroed on drop.
pub struct DataKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").finish_non_exhaustive()
    }
}

fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn key_from_slice(bytes: &[u8]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    (bytes.len() == KEY_LEN).then(|| {
        key.copy_from_slice(bytes);
        key
    })
}

fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut());
    key
}

fn datakey_aad(ticket_id: Uuid) -> Vec<u8> {
    [DATAKEY_AAD_PREFIX, ticket_id.as_bytes()].concat()
}

fn field_aad(ticket_id: Uuid, field: SealedField) -> Vec<u8> {
    [FIELD_AAD_PREFIX, &[VERSION], ticket_id.as_bytes(), field.as_str().as_bytes()].concat()
}

/// Encrypts `msg` with a fresh nonce and returns the base64 envelope.
fn seal_envelope(key: &[u8; KEY_LEN], aad: &[u8], msg: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ct = XChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        // Only fails for messages beyond the cipher's ~256 GiB limit.
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory text");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    B64.encode(out)
}

/// Decodes and decrypts a base64 envelope; the plaintext is zeroed on drop.
fn open_envelope(key: &[u8; KEY_LEN], aad: &[u8], envelope: &str) -> Result<Zeroizing<Vec<u8>>, CipherError> {
    let raw = B64.decode(envelope).map_err(|_| CipherError::Malformed)?;
    if raw.len() < 1 + NONCE_LEN + TAG_LEN {
        return Err(CipherError::Malformed);
    }
    if raw[0] != VERSION {
        return Err(CipherError::UnsupportedVersion(raw[0]));
    }
    let (nonce, msg) = raw[1..].split_at(NONCE_LEN);
    XChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(XNonce::from_slice(nonce), Payload { msg, aad })
        .map(Zeroizing::new)
        .map_err(|_| CipherError::Decrypt)
}

impl MasterKeys {
    /// Parses `kid:base64,kid2:base64` (standard base64 of 32 bytes each);
    /// the first key is active. Whitespace around entries is ignored.
    ///
    /// # Errors
    ///
    /// [`CipherError`] if the spec is empty, an entry is malformed, a kid is
    /// invalid or repeated, or a key is not base64 of exactly 32 bytes.
    pub fn parse(spec: &str) -> Result<Self, CipherError> {
        if spec.trim().is_empty() {
            return Err(CipherError::NoKeys);
        }
        let mut keys: Vec<MasterKey> = Vec::new();
        for (index, entry) in spec.split(',').enumerate() {
            let (kid, b64) = entry.trim().split_once(':').ok_or(CipherError::MalformedEntry { index })?;
            if !valid_kid(kid) {
                return Err(CipherError::InvalidKid { index });
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(CipherError::DuplicateKid { kid: kid.to_owned() });
            }
            let kid = kid.to_owned();
            let Ok(bytes) = B64.decode(b64).map(Zeroizing::new) else {
                return Err(CipherError::BadBase64 { kid });
            };
            let Some(key) = key_from_slice(&bytes) else {
                let len = bytes.len();
                return Err(CipherError::BadKeyLength { kid, len });
            };
            keys.push(MasterKey { kid, key });
        }
        Ok(Self { keys })
    }

    /// Creates one fresh random master key named `kid` and returns it with
    /// the spec string to store (it holds the key: keep it secret).
    ///
    /// # Panics
    ///
    /// If `kid` is not 1 to 32 of `A-Z a-z 0-9 _ -`.
    pub fn generate(kid: &str) -> (Self, String) {
        assert!(valid_kid(kid), "invalid master key id");
        let key = random_key();
        let spec = format!("{kid}:{}", B64.encode(key.as_ref()));
        let keys = vec![MasterKey { kid: kid.to_owned(), key }];
        (Self { keys }, spec)
    }

    /// The key id new data keys are wrapped under.
    pub fn active_kid(&self) -> &str {
        &self.active().kid
    }

    /// Whether `wrapped` is under an older key and should be re-wrapped.
    pub fn needs_rewrap(&self, wrapped: &WrappedKey) -> bool {
        wrapped.kid != self.active_kid()
    }

    fn active(&self) -> &MasterKey {
        // `parse` and `generate` never build an empty list.
        &self.keys[0]
    }

    fn wrap(&self, ticket_id: Uuid, data_key: &DataKey) -> WrappedKey {
        let active = self.active();
        WrappedKey {
            kid: active.kid.clone(),
            ciphertext: seal_envelope(&active.key, &datakey_aad(ticket_id), data_key.key.as_ref()),
        }
    }

    /// Creates a random data key for `ticket_id`, wrapped under the active
    /// master key.
    pub fn new_data_key(&self, ticket_id: Uuid) -> (DataKey, WrappedKey) {
        let data_key = DataKey { key: random_key() };
        let wrapped = self.wrap(ticket_id, &data_key);
        (data_key, wrapped)
    }

    /// Recovers the data key of `ticket_id`.
    ///
    /// # Errors
    ///
    /// [`CipherError::UnknownKid`] if no master key has `wrapped.kid`;
    /// [`CipherError::Decrypt`] if it was wrapped for another ticket or was
    /// altered; [`CipherError::Malformed`] for a bad envelope.
    pub fn unwrap(&self, ticket_id: Uuid, wrapped: &WrappedKey) -> Result<DataKey, CipherError> {
        let master = self
            .keys
            .iter()
            .find(|k| k.kid == wrapped.kid)
            .ok_or_else(|| CipherError::UnknownKid { kid: wrapped.kid.clone() })?;
        let plain = open_envelope(&master.key, &datakey_aad(ticket_id), &wrapped.ciphertext)?;
        let key = key_from_slice(&plain).ok_or(CipherError::Malformed)?;
        Ok(DataKey { key })
    }

    /// Re-wraps a data key under the active master key (key rotation).
    ///
    /// # Errors
    ///
    /// As [`MasterKeys::unwrap`].
    pub fn rewrap(&self, ticket_id: Uuid, wrapped: &WrappedKey) -> Result<WrappedKey, CipherError> {
        let data_key = self.unwrap(ticket_id, wrapped)?;
        Ok(self.wrap(ticket_id, &data_key))
    }
}

impl DataKey {
    /// Encrypts `plaintext` for `field` of `ticket_id` with a fresh nonce and
    /// computes its digest.
    pub fn seal(&self, ticket_id: Uuid, field: SealedField, plaintext: &str) -> SealedText {
        SealedText {
            ciphertext: seal_envelope(&self.key, &field_aad(ticket_id, field), plaintext.as_bytes()),
            digest: self.digest(field, plaintext),
        }
    }

    /// Decrypts text sealed by [`DataKey::seal`] for the same ticket and field.
    ///
    /// # Errors
    ///
    /// [`CipherError::Decrypt`] for another key, ticket or field, or altered
    /// data; [`CipherError::Malformed`] for a bad envelope or non-UTF-8 text.
    pub fn open(&self, ticket_id: Uuid, field: SealedField, sealed: &SealedText) -> Result<String, CipherError> {
        let plain = open_envelope(&self.key, &field_aad(ticket_id, field), &sealed.ciphertext)?;
        String::from_utf8(plain.to_vec()).map_err(|_| CipherError::Malformed)
    }

    /// The keyed digest [`DataKey::seal`] stores: equal text in the same
    /// field gives an equal digest.
    pub fn digest(&self, field: SealedField, plaintext: &str) -> String {
        let mut derive = new_mac(self.key.as_ref());
        derive.update(DIGEST_KEY_LABEL);
        let digest_key = Zeroizing::new(derive.finalize().into_bytes().to_vec());
        let mut mac = new_mac(&digest_key);
        mac.update(field.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(plaintext.as_bytes());
        B64.encode(&mac.finalize().into_bytes()[..DIGEST_LEN])
    }
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this never fails.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_b64(byte: u8) -> String {
        B64.encode([byte; KEY_LEN])
    }

    fn keys(spec: &str) -> MasterKeys {
        MasterKeys::parse(spec).expect("valid spec")
    }

    #[test]
    fn seal_then_open_round_trips() {
        let (master, _) = MasterKeys::generate("k1");
        let ticket = Uuid::new_v4();
        let (dk, wrapped) = master.new_data_key(ticket);
        let sealed = dk.seal(ticket, SealedField::Title, "Printer on fire 🔥");
        assert_eq!(dk.open(ticket, SealedField::Title, &sealed).unwrap(), "Printer on fire 🔥");
        let again = master.unwrap(ticket, &wrapped).unwrap();
        assert_eq!(again.open(ticket, SealedField::Title, &sealed).unwrap(), "Printer on fire 🔥");
        assert_eq!(wrapped.kid, "k1");
        assert!(!sealed.ciphertext.contains("Printer"));
    }

    #[test]
    fn empty_text_round_trips() {
        let (master, _) = MasterKeys::generate("k1");
        let ticket = Uuid::new_v4();
        let (dk, _) = master.new_data_key(ticket);
        let sealed = dk.seal(ticket, SealedField::Description, "");
        assert_eq!(dk.open(ticket, SealedField::Description, &sealed).unwrap(), "");
    }

    #[test]
    fn wrong_ticket_or_field_fails_to_open() {
        let (master, _) = MasterKeys::generate("k1");
        let ticket = Uuid::new_v4();
        let (dk, wrapped) = master.new_data_key(ticket);
        let sealed = dk.seal(ticket, SealedField::ConfidentialNotes, "secret");
        let other = Uuid::new_v4();
        assert!(matches!(dk.open(other, SealedField::ConfidentialNotes, &sealed), Err(CipherError::Decrypt)));
        assert!(matches!(dk.open(ticket, SealedField::Description, &sealed), Err(CipherError::Decrypt)));
        assert!(matches!(master.unwrap(other, &wrapped), Err(CipherError::Decrypt)));
    }

    #[test]
    fn other_data_key_fails_to_open() {
        let (master, _) = MasterKeys::generate("k1");
        let ticket = Uuid::new_v4();
        let (dk, _) = master.new_data_key(ticket);
        let (dk2, _) = master.new_data_key(ticket);
        let sealed = dk.seal(ticket, SealedField::Title, "hello");
        assert!(dk2.open(ticket, SealedField::Title, &sealed).is_err());
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let (master, _) = MasterKeys::generate("k1");
        let ticket = Uuid::new_v4();
        let (dk, mut wrapped) = master.new_data_key(ticket);
        let mut sealed = dk.seal(ticket, SealedField::Title, "hello world");
        let mut raw = B64.decode(&sealed.ciphertext).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        sealed.ciphertext = B64.encode(&raw);
        assert!(matches!(dk.open(ticket, SealedField::Title, &sealed), Err(CipherError::Decrypt)));

        raw[last] ^= 0x01;
        raw[0] = 0x02;
        sealed.ciphertext = B64.encode(&raw);
        assert!(matches!(dk.open(ticket, SealedField::Title, &sealed), Err(CipherError::UnsupportedVersion(2))));

        sealed.ciphertext = "AAAA".into();
        assert!(matches!(dk.open(ticket, SealedField::Title, &sealed), Err(CipherError::Malformed)));
        sealed.ciphertext = "not base64!".into();
        assert!(matches!(dk.open(ticket, SealedField::Title, &sealed), Err(CipherError::Malformed)));

        let mut raw = B64.decode(&wrapped.ciphertext).unwrap();
        raw[5] ^= 0x80;
        wrapped.ciphertext = B64.encode(&raw);
        assert!(matches!(master.unwrap(ticket, &wrapped), Err(CipherError::Decrypt)));
    }

    #[test]
    fn unknown_kid_fails() {
        let (master, _) = MasterKeys::generate("k1");
        let ticket = Uuid::new_v4();
        let (_, mut wrapped) = master.new_data_key(ticket);
        wrapped.kid = "k9".into();
        assert!(matches!(
            master.unwrap(ticket, &wrapped),
            Err(CipherError::UnknownKid { kid }) if kid == "k9"
        ));
    }

    #[test]
    fn rotation_unwraps_old_and_rewraps_to_active() {
        let old = keys(&format!("k1:{}", key_b64(1)));
        let ticket = Uuid::new_v4();
        let (dk, wrapped) = old.new_data_key(ticket);
        let sealed = dk.seal(ticket, SealedField::AttachmentName, "scan.pdf");

        let rotated = keys(&format!("k2:{}, k1:{}", key_b64(2), key_b64(1)));
        assert_eq!(rotated.active_kid(), "k2");
        assert!(rotated.needs_rewrap(&wrapped));
        let unwrapped = rotated.unwrap(ticket, &wrapped).unwrap();
        assert_eq!(unwrapped.open(ticket, SealedField::AttachmentName, &sealed).unwrap(), "scan.pdf");

        let rewrapped = rotated.rewrap(ticket, &wrapped).unwrap();
        assert_eq!(rewrapped.kid, "k2");
        assert!(!rotated.needs_rewrap(&rewrapped));
        let only_new = keys(&format!("k2:{}", key_b64(2)));
        let dk2 = only_new.unwrap(ticket, &rewrapped).unwrap();
        assert_eq!(dk2.open(ticket, SealedField::AttachmentName, &sealed).unwrap(), "scan.pdf");
        assert!(matches!(only_new.unwrap(ticket, &wrapped), Err(CipherError::UnknownKid { .. })));
    }

    #[test]
    fn parse_refuses_bad_specs() {
        let k = key_b64(7);
        assert!(matches!(MasterKeys::parse(""), Err(CipherError::NoKeys)));
        assert!(matches!(MasterKeys::parse("  "), Err(CipherError::NoKeys)));
        assert!(matches!(MasterKeys::parse("k1:not*base64"), Err(CipherError::BadBase64 { .. })));
        assert!(matches!(
            MasterKeys::parse(&format!("k1:{}", B64.encode([0u8; 16]))),
            Err(CipherError::BadKeyLength { len: 16, .. })
        ));
        assert!(matches!(MasterKeys::parse(&format!("k1:{k},k1:{k}")), Err(CipherError::DuplicateKid { .. })));
        assert!(matches!(MasterKeys::parse(&k), Err(CipherError::MalformedEntry { index: 0 })));
        assert!(matches!(MasterKeys::parse(&format!("k1:{k},")), Err(CipherError::MalformedEntry { index: 1 })));
        assert!(matches!(MasterKeys::parse(&format!(":{k}")), Err(CipherError::InvalidKid { index: 0 })));
        assert!(matches!(MasterKeys::parse(&format!("bad kid:{k}")), Err(CipherError::InvalidKid { .. })));
        assert!(matches!(MasterKeys::parse(&format!("{}:{k}", "k".repeat(33))), Err(CipherError::InvalidKid { .. })));
        assert!(MasterKeys::parse(&format!("{}:{k}", "k_-9".repeat(8))).is_ok());
    }

    #[test]
    fn generated_spec_parses_back() {
        let (master, spec) = MasterKeys::generate("boot");
        let ticket = Uuid::new_v4();
        let (dk, wrapped) = master.new_data_key(ticket);
        let sealed = dk.seal(ticket, SealedField::Title, "x");
        let reparsed = keys(&spec);
        let dk2 = reparsed.unwrap(ticket, &wrapped).unwrap();
        assert_eq!(dk2.open(ticket, SealedField::Title, &sealed).unwrap(), "x");
    }

    #[test]
    fn digest_is_equal_for_equal_text_only() {
        let (master, _) = MasterKeys::generate("k1");
        let ticket = Uuid::new_v4();
        let (dk, _) = master.new_data_key(ticket);
        let a = dk.seal(ticket, SealedField::Title, "same");
        let b = dk.seal(ticket, SealedField::Title, "same");
        let c = dk.seal(ticket, SealedField::Title, "different");
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.digest, dk.digest(SealedField::Title, "same"));
        assert_ne!(a.digest, c.digest);
        assert_ne!(dk.digest(SealedField::Title, "same"), dk.digest(SealedField::Description, "same"));
        let (other, _) = master.new_data_key(ticket);
        assert_ne!(a.digest, other.digest(SealedField::Title, "same"));
        assert_eq!(B64.decode(&a.digest).unwrap().len(), DIGEST_LEN);
    }

    #[test]
    fn nonce_differs_between_seals() {
        let (master, _) = MasterKeys::generate("k1");
        let ticket = Uuid::new_v4();
        let (dk, _) = master.new_data_key(ticket);
        let a = dk.seal(ticket, SealedField::Title, "same");
        let b = dk.seal(ticket, SealedField::Title, "same");
        assert_ne!(a.ciphertext, b.ciphertext);
        let (ra, rb) = (B64.decode(&a.ciphertext).unwrap(), B64.decode(&b.ciphertext).unwrap());
        assert_eq!(ra[0], VERSION);
        assert_ne!(ra[1..=NONCE_LEN], rb[1..=NONCE_LEN]);
        assert_eq!(ra.len(), 1 + NONCE_LEN + "same".len() + TAG_LEN);
    }

    #[test]
    fn debug_and_errors_do_not_leak_keys() {
        let k = key_b64(0xAB);
        let master = keys(&format!("k1:{k}"));
        let printed = format!("{master:?}");
        assert!(printed.contains("k1"));
        assert!(!printed.contains(&k));
        assert!(!printed.contains("171")); // 0xAB as a decimal array element
        let (dk, _) = master.new_data_key(Uuid::new_v4());
        assert_eq!(format!("{dk:?}"), "DataKey { .. }");
        let err = MasterKeys::parse(&format!("k1:{}", B64.encode([0xABu8; 31]))).unwrap_err();
        assert!(!err.to_string().contains(&B64.encode([0xABu8; 31])));
        let err = MasterKeys::parse(&k).unwrap_err();
        assert!(!err.to_string().contains(&k));
    }
}
