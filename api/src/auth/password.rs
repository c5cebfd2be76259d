//! Password hashing, verification and the password policy.
//!
//! Hashing is argon2id with the crate defaults (OWASP's minimum: 19 MiB,
//! t=2, p=1), about 28 ms of CPU each on our machines. It runs on tokio's
//! blocking pool, and a semaphore with one permit per core bounds how many
//! run at once, so a burst of logins queues instead of starving the runtime
//! and the blocking pool. Unknown users are checked against a dummy hash so
//! the answer takes as long as for a known user.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Semaphore;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in characters (bounds hashing work per request).
pub const MAX_PASSWORD_CHARS: usize = 256;

static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common_passwords.txt").lines().map(str::trim).collect());

/// Hashing failed; the message is deliberately uninformative.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed")]
    Hash(#[from] argon2::password_hash::Error),
    #[error("password hashing task did not complete")]
    Task,
}

/// Why a new password is refused; the messages are meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error("password must be at least {min} characters", min = MIN_PASSWORD_CHARS)]
    TooShort,
    #[error("password must be at most {max} characters", max = MAX_PASSWORD_CHARS)]
    TooLong,
    #[error("password is too common")]
    TooCommon,
    #[error("password must not be one character repeated")]
    Repetitive,
    #[error("password must not contain your email address or name")]
    Personal,
}

/// Argon2id hasher with bounded concurrency; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    dummy_phc: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("available_permits", &self.inner.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordHasher {
    /// A hasher allowing one hash per available CPU core at a time.
    ///
    /// Computes the dummy hash on the calling thread (one hash, ~28 ms):
    /// build it at start-up, not per request.
    pub fn new() -> Self {
        // One core stays free for everything else during a burst of sign-ins.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_concurrency(cores.saturating_sub(1).max(1))
    }

    /// A hasher allowing at most `max_concurrent` (at least 1) hashes at once.
    ///
    /// # Panics
    ///
    /// Only if argon2 cannot hash a fixed string with its default
    /// parameters, which would be a bug in the crate.
    pub fn with_concurrency(max_concurrent: usize) -> Self {
        let argon2 = Argon2::default();
        let dummy_phc = hash_with(&argon2, "timing-equaliser: not a real password")
            .expect("argon2 hashes a fixed password with default parameters");
        Self { inner: Arc::new(Inner { argon2, permits: Arc::new(Semaphore::new(max_concurrent.max(1))), dummy_phc }) }
    }

    /// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    ///
    /// # Errors
    ///
    /// [`PasswordError`] if argon2 fails or the blocking task is lost.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let permit = self.acquire().await?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_with(&inner.argon2, password.expose_secret())
        })
        .await
        .map_err(|_| PasswordError::Task)?
    }

    /// Checks `password` against the stored PHC string of the user, or,
    /// when there is no such user (`None`), against a dummy hash so that the
    /// time taken does not tell. Returns `true` only for a match with a real
    /// hash; a malformed stored hash counts as no match.
    pub async fn verify(&self, password: SecretString, phc: Option<String>) -> bool {
        let Ok(permit) = self.acquire().await else {
            return false;
        };
        let inner = Arc::clone(&self.inner);
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let password = password.expose_secret().as_bytes();
            let check =
                |phc: &str| PasswordHash::new(phc).map(|hash| inner.argon2.verify_password(password, &hash).is_ok());
            match phc.as_deref().map(check) {
                Some(Ok(matched)) => matched,
                Some(Err(_)) => {
                    tracing::warn!("stored password hash is malformed");
                    let _ = check(&inner.dummy_phc);
                    false
                }
                None => {
                    let _ = check(&inner.dummy_phc);
                    false
                }
            }
        })
        .await;
        outcome.unwrap_or(false)
    }

    async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, PasswordError> {
        // The permit moves into the blocking task, so it is held until the
        // hash really finishes even if the request is cancelled meanwhile.
        Arc::clone(&self.inner.permits).acquire_owned().await.map_err(|_| PasswordError::Task)
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(argon2.hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Checks a new password against the policy: 12 to 256 characters, not a
/// well-known password, not one character repeated, and not the user's
/// email address, its local part (when 4+ characters) or display name.
///
/// # Errors
///
/// The first [`PasswordPolicyError`] that applies.
pub fn check_policy(password: &str, email: &str, display_name: &str) -> Result<(), PasswordPolicyError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooLong);
    }
    let mut it = password.chars();
    if let Some(first) = it.next() {
        if it.all(|c| c == first) {
            return Err(PasswordPolicyError::Repetitive);
        }
    }
    let lower = password.to_lowercase();
    if COMMON_PASSWORDS.contains(lower.as_str()) {
        return Err(PasswordPolicyError::TooCommon);
    }
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    let name = display_name.trim().to_lowercase();
    if (!email.is_empty() && lower == email)
        || (local.chars().count() >= 4 && lower.contains(local))
        || (!name.is_empty() && lower == name)
    {
        return Err(PasswordPolicyError::Personal);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        use PasswordPolicyError::*;
        let long = "ab".repeat(129); // 258 chars
        let max = "xy".repeat(128); // 256 chars
        let cases: &[(&str, Result<(), PasswordPolicyError>)] = &[
            ("short-pw1!", Err(TooShort)),
            ("ééééééééééé", Err(TooShort)), // 11 chars, 22 bytes
            ("émoji🦀tëst12", Ok(())),      // 12 chars
            (&long, Err(TooLong)),
            (&max, Ok(())),
            ("aaaaaaaaaaaaaaa", Err(Repetitive)),
            ("Password1234", Err(TooCommon)),
            ("QWERTYUIOP123", Err(TooCommon)),
            ("summer2024!!", Err(TooCommon)),
            ("administrator", Err(TooCommon)),
            ("xx-JaneDoe-2024", Err(Personal)),
            ("JANEDOE@EXAMPLE.COM", Err(Personal)),
            ("Jane Doe The Great", Err(Personal)),
            ("correct horse battery", Ok(())),
            ("tangerine-Kettle-47", Ok(())),
        ];
        for (password, expected) in cases {
            assert_eq!(&check_policy(password, "JaneDoe@Example.com", "Jane Doe The Great"), expected, "{password}");
        }
        assert_eq!(check_policy("jane.doe@example.com", "Jane.Doe@example.com", "J"), Err(Personal));
        // A local part under 4 characters is too short to be meaningful.
        assert_eq!(check_policy("bob-tangerine-47", "bob@example.com", "B"), Ok(()));
        assert_eq!(check_policy("tangerine-Kettle-47", "", ""), Ok(()));
    }

    #[test]
    fn common_list_is_lowercase_and_long_enough() {
        assert!(COMMON_PASSWORDS.len() >= 200);
        for p in COMMON_PASSWORDS.iter() {
            assert_eq!(*p, p.to_lowercase());
            assert!(p.chars().count() >= MIN_PASSWORD_CHARS, "{p}");
        }
    }

    #[test]
    fn policy_messages_are_user_facing() {
        assert_eq!(PasswordPolicyError::TooShort.to_string(), "password must be at least 12 characters");
        assert_eq!(PasswordPolicyError::TooCommon.to_string(), "password is too common");
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::new();
        let phc = hasher.hash("tangerine-Kettle-47".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify("tangerine-Kettle-47".into(), Some(phc.clone())).await);
        assert!(!hasher.verify("tangerine-kettle-47".into(), Some(phc)).await);
    }

    #[tokio::test]
    async fn unknown_user_and_malformed_hash_do_not_verify() {
        let hasher = PasswordHasher::with_concurrency(1);
        assert!(!hasher.verify("anything-at-all".into(), None).await);
        let dummy = hasher.inner.dummy_phc.clone();
        assert!(!hasher.verify("timing-equaliser: not a real password".into(), None).await);
        assert!(PasswordHash::new(&dummy).is_ok());
        assert!(!hasher.verify("x".into(), Some("not a phc".into())).await);
        assert!(!hasher.verify("x".into(), Some(String::new())).await);
    }

    #[tokio::test]
    async fn hashes_are_salted() {
        let hasher = PasswordHasher::new();
        let a = hasher.hash("tangerine-Kettle-47".into()).await.unwrap();
        let b = hasher.hash("tangerine-Kettle-47".into()).await.unwrap();
        assert_ne!(a, b);
    }
}
