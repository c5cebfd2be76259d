//! Value types that parse once and stay valid.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// A value a person typed was refused; the message is safe to show them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

fn invalid(message: impl Into<String>) -> InvalidInput {
    InvalidInput(message.into())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// # Errors
            /// When `raw` is not a UUID.
            pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
                Uuid::parse_str(raw.trim())
                    .map(Self)
                    .map_err(|_| invalid(concat!("not a valid ", stringify!($name))))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies a ticket; random, so ids leak nothing.
    TicketId
);
id_type!(
    /// Identifies a user account.
    UserId
);
id_type!(
    /// Identifies one attachment of a ticket.
    AttachmentId
);

impl UserId {
    /// The account id is derived from the normalised email, so two concurrent
    /// registrations of one address collide on the same event stream and the
    /// store's optimistic lock lets exactly one win.
    pub fn for_email(email: &Email) -> Self {
        const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2b0e_5a7d_4c1e_9d3b_0a8e_7f26_41c5);
        Self(Uuid::new_v5(&NAMESPACE, email.as_str().as_bytes()))
    }
}

/// Unicode's bidirectional formatting characters: embeddings and overrides
/// (U+202A–U+202E), isolates (U+2066–U+2069) and the marks (U+200E,
/// U+200F, U+061C). They reorder how the text around them is shown, so a
/// title can read differently from what it says; people never need them
/// to write a ticket, and filenames lose them too.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `text` without bidirectional controls: every text field a person types
/// goes through here (via [`bounded_text`]), so none reaches stored text.
pub fn strip_bidi_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(is_bidi_control) {
        std::borrow::Cow::Owned(text.chars().filter(|&c| !is_bidi_control(c)).collect())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn has_forbidden_control(text: &str, allow_newlines: bool) -> bool {
    text.chars().any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
}

fn bounded_text(raw: &str, what: &str, min: usize, max: usize, multiline: bool) -> Result<String, InvalidInput> {
    let stripped = strip_bidi_controls(raw);
    let text = stripped.trim();
    let len = text.chars().count();
    if len < min {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if len > max {
        return Err(invalid(format!("{what} must be at most {max} characters")));
    }
    if has_forbidden_control(text, multiline) {
        return Err(invalid(format!("{what} contains control characters")));
    }
    Ok(text.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $min:literal, $max:literal, $multiline:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;
            /// Drops bidirectional controls, trims surrounding whitespace and
            /// checks the length in characters.
            ///
            /// # Errors
            /// When the text is too short, too long or holds control characters.
            pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
                bounded_text(raw, $what, $min, $max, $multiline).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

text_type!(
    /// A ticket title: 1–200 characters on one line.
    Title, "title", 1, 200, false
);
text_type!(
    /// A ticket description: 1–10,000 characters.
    Description, "description", 1, 10_000, true
);
text_type!(
    /// Confidential notes: up to 10,000 characters; empty clears them.
    Notes, "confidential notes", 0, 10_000, true
);
text_type!(
    /// The name a user shows to others: 1–100 characters on one line.
    DisplayName, "display name", 1, 100, false
);
text_type!(
    /// Why a ticket was deleted: up to 1,000 characters.
    Reason, "reason", 0, 1_000, true
);
text_type!(
    /// What a ticket search looks for: up to 200 characters on one line.
    SearchText, "search", 0, 200, false
);

pub use crate::email::Email;

macro_rules! name_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The stable name used in events, read models and the API.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// # Errors
            /// When `raw` is not one of the stable names.
            pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
                match raw {
                    $($text => Ok($name::$variant),)+
                    _ => Err(invalid(concat!("unknown ", stringify!($name)))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

name_enum!(
    /// What a user may do (DESIGN §4).
    Role { Employee => "EMPLOYEE", Admin => "ADMIN" }
);
name_enum!(
    /// Where a ticket is in its workflow.
    Status { Open => "OPEN", InProgress => "IN_PROGRESS", Resolved => "RESOLVED" }
);
name_enum!(
    /// How urgent a ticket is.
    Priority { Low => "LOW", Medium => "MEDIUM", High => "HIGH" }
);

impl Status {
    /// OPEN ↔ IN_PROGRESS, IN_PROGRESS → RESOLVED, OPEN → RESOLVED, RESOLVED → OPEN.
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Open, InProgress) | (InProgress, Open) | (InProgress, Resolved) | (Open, Resolved) | (Resolved, Open)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse("  Printer on fire ").unwrap().as_str(), "Printer on fire");
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse(&"é".repeat(200)).is_ok());
        assert!(Title::parse(&"é".repeat(201)).is_err());
        assert!(Title::parse("two\nlines").is_err());
        assert!(Description::parse("two\nlines").is_ok());
        assert!(Description::parse("bell\u{7}").is_err());
        assert!(Description::parse(&"x".repeat(10_001)).is_err());
        assert!(Notes::parse("").is_ok());
    }

    #[test]
    fn bidi_controls_never_reach_stored_text() {
        let controls = ["\u{202A}", "\u{202B}", "\u{202C}", "\u{202D}", "\u{202E}", "\u{2066}", "\u{2067}"];
        let more = ["\u{2068}", "\u{2069}", "\u{200E}", "\u{200F}", "\u{061C}"];
        for c in controls.iter().chain(&more) {
            let typed = format!("invoice{c}fdp.exe");
            assert_eq!(Title::parse(&typed).unwrap().as_str(), "invoicefdp.exe");
            assert_eq!(Description::parse(&typed).unwrap().as_str(), "invoicefdp.exe");
            assert_eq!(Notes::parse(&typed).unwrap().as_str(), "invoicefdp.exe");
            assert_eq!(Reason::parse(&typed).unwrap().as_str(), "invoicefdp.exe");
            assert_eq!(DisplayName::parse(&typed).unwrap().as_str(), "invoicefdp.exe");
            assert_eq!(SearchText::parse(&typed).unwrap().as_str(), "invoicefdp.exe");
        }
        assert!(Title::parse("\u{202E}\u{2066}").is_err(), "nothing left once they are dropped");
    }

    #[test]
    fn status_transitions_follow_the_design() {
        use Status::*;
        let allowed =
            [(Open, InProgress), (InProgress, Open), (InProgress, Resolved), (Open, Resolved), (Resolved, Open)];
        for from in [Open, InProgress, Resolved] {
            for to in [Open, InProgress, Resolved] {
                assert_eq!(from.can_move_to(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn enums_round_trip_their_names() {
        for s in ["OPEN", "IN_PROGRESS", "RESOLVED"] {
            assert_eq!(Status::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(serde_json::to_string(&Priority::High).unwrap(), "\"HIGH\"");
        assert!(Role::parse("ROOT").is_err());
    }
}
