//! Free text as it is kept in events: sealed under the ticket's data key.
//!
//! The domain never sees plaintext of sealed fields; the write side seals
//! before it builds a command and the projector opens when it builds read
//! models. Destroying the data key therefore erases the text everywhere.

use serde::{Deserialize, Serialize};

/// Ciphertext envelope of one text field, plus a keyed digest of the
/// plaintext so the aggregate can tell "same value again" without reading it.
///
/// `ciphertext` is base64 (standard, padded) of `version(1) || nonce(24) ||
/// XChaCha20-Poly1305 ciphertext+tag`; `digest` is base64 of a keyed MAC over
/// the field name and plaintext. Both are meaningless without the data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedText {
    pub ciphertext: String,
    pub digest: String,
}

/// The fields whose text is sealed; their names are bound into the AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedField {
    Title,
    Description,
    ConfidentialNotes,
    AttachmentName,
    DeletionReason,
}

impl SealedField {
    /// Stable name used in the AAD and the digest. Never change these.
    pub fn as_str(self) -> &'static str {
        match self {
            SealedField::Title => "title",
            SealedField::Description => "description",
            SealedField::ConfidentialNotes => "confidential_notes",
            SealedField::AttachmentName => "attachment_name",
            SealedField::DeletionReason => "deletion_reason",
        }
    }
}
