//! Email addresses: one spelling per address, and no look-alikes.
//!
//! An address is trimmed, NFKC-normalised and lower-cased, so full-width
//! letters, ligatures and case give the same address (and, as the account
//! id is derived from it, the same account). Addresses recorded before NFKC
//! was applied were trimmed and lower-cased only; for ASCII addresses the
//! two agree, and stored events keep the text they were recorded with.
//!
//! A new account's address must also not imitate another: every part of it
//! (the local part and each domain label) is of one script, and an address
//! that is not plain ASCII must not have a plain-ASCII confusable skeleton
//! (UTS #39), i.e. not be made only of characters that look like ASCII.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;
use unicode_security::MixedScript as _;

use crate::values::InvalidInput;

/// Longest address accepted, in bytes once normalised (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest input looked at: NFKC may shorten text (a full-width letter is
/// three bytes, its ASCII form one), but never by more than this factor, so
/// anything longer is refused before any normalisation work is done.
const MAX_RAW_BYTES: usize = MAX_EMAIL_BYTES * 4;

/// An email address in its normalised form.
///
/// Deserialised as stored, without normalising again: an event keeps the
/// address it was recorded with, and re-normalising old ones on a replay
/// could move an account's address or make two accounts' addresses one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// The normalised text of `raw`: trimmed, NFKC, lower case. `None` when
    /// it is longer than [`MAX_EMAIL_BYTES`] (before or after normalising),
    /// so callers can refuse it before recording anything about it.
    pub fn normalise(raw: &str) -> Option<String> {
        let raw = raw.trim();
        if raw.len() > MAX_RAW_BYTES {
            return None;
        }
        let email: String = raw.nfkc().collect::<String>().to_lowercase();
        (email.len() <= MAX_EMAIL_BYTES).then_some(email)
    }

    /// The form addresses had before NFKC: trimmed and lower-cased only.
    /// Accounts registered then are found by it when it differs.
    pub fn legacy_form(raw: &str) -> Option<String> {
        let email = raw.trim().to_lowercase();
        (email.len() <= MAX_EMAIL_BYTES).then_some(email)
    }

    /// # Errors
    /// When the address is not of the form `local@domain.tld` within RFC 5321's lengths.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let email = Self::normalise(raw).ok_or_else(refuse)?;
        Self::checked(email)
    }

    fn checked(email: String) -> Result<Self, InvalidInput> {
        let (local, domain) = email.split_once('@').ok_or_else(refuse)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err(refuse())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The UTS #39 confusable skeleton: two addresses that look alike have
    /// the same one.
    pub fn skeleton(&self) -> String {
        unicode_security::skeleton(&self.0).collect()
    }

    /// Refuses an address made to look like another: a part mixing scripts
    /// (a Cyrillic `а` among Latin letters), or a non-ASCII address whose
    /// every character imitates ASCII. Checked when an account is created,
    /// from the address alone, so it holds however far the read models lag.
    ///
    /// # Errors
    /// When the address is such a look-alike.
    pub fn check_not_lookalike(&self) -> Result<(), InvalidInput> {
        let parts = self.0.split(['@', '.']);
        let mixed = parts.into_iter().any(|part| !part.is_single_script());
        let imitates_ascii = !self.0.is_ascii() && self.skeleton().is_ascii();
        if mixed || imitates_ascii {
            return Err(InvalidInput(
                "email address mixes scripts or imitates another address; type it in its usual spelling".into(),
            ));
        }
        Ok(())
    }
}

fn refuse() -> InvalidInput {
    InvalidInput("email address is not valid".into())
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::UserId;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse(" Alice@Example.COM ").unwrap().as_str(), "alice@example.com");
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "a b@example.com",
            "alice@@example.com",
            ".a@example.com",
            "a..b@example.com",
            "alice@-x.com",
            "ad\u{202E}a@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
        let a = Email::parse("Bob@Example.com").unwrap();
        let b = Email::parse("bob@example.COM").unwrap();
        assert_eq!(UserId::for_email(&a), UserId::for_email(&b));
    }

    #[test]
    fn full_width_letters_are_the_same_address() {
        let plain = Email::parse("ada@example.com").unwrap();
        let wide = Email::parse("ＡＤＡ＠ｅｘａｍｐｌｅ．ｃｏｍ").unwrap();
        assert_eq!(wide, plain);
        assert_eq!(UserId::for_email(&wide), UserId::for_email(&plain));
    }

    #[test]
    fn ascii_addresses_keep_their_id() {
        // Ids of accounts registered before NFKC: trimmed and lower-cased.
        let email = Email::parse(" Ada.Lovelace+it@Example.com ").unwrap();
        assert_eq!(Some(email.as_str().to_owned()), Email::legacy_form(" Ada.Lovelace+it@Example.com "));
    }

    #[test]
    fn look_alikes_are_refused() {
        for fake in ["\u{430}da@example.com", "ada@ex\u{430}mple.com", "\u{430}\u{440}\u{435}@example.com"] {
            let parsed = Email::parse(fake).expect("well-formed");
            assert!(parsed.check_not_lookalike().is_err(), "{fake} accepted");
        }
        for real in ["ada@example.com", "иван@пример.рф", "josé@example.com", "田中@example.jp"] {
            let parsed = Email::parse(real).expect("well-formed");
            assert_eq!(parsed.check_not_lookalike(), Ok(()), "{real} refused");
        }
        let cyrillic = Email::parse("\u{430}da@example.com").unwrap();
        assert_eq!(cyrillic.skeleton(), Email::parse("ada@example.com").unwrap().skeleton());
    }

    #[test]
    fn over_long_input_is_refused_before_normalising() {
        assert!(Email::normalise(&format!("{}@example.com", "a".repeat(300))).is_none());
        assert!(Email::normalise(&"ａ".repeat(400)).is_none());
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(900_000))).is_err());
    }

    #[test]
    fn stored_addresses_are_read_as_recorded() {
        let stored: Email = serde_json::from_str("\"ａｄａ@example.com\"").unwrap();
        assert_eq!(stored.as_str(), "ａｄａ@example.com");
        assert_eq!(serde_json::to_string(&stored).unwrap(), "\"ａｄａ@example.com\"");
    }
}
