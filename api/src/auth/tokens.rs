//! Access tokens (short-lived JWTs) and opaque refresh tokens.
//!
//! Access tokens are HS256 JWTs, and only HS256 is accepted: a token whose
//! header names another algorithm (`none`, HS512, RS256, …) is refused
//! before its signature is looked at. `iss`, `aud`, `exp`, `iat` and `sub`
//! are required, `typ` must be `"access"`, `nbf` (which every token we
//! issue carries) is checked, and the clock leeway is 5 s. `iat_ms` is the
//! issue time in milliseconds: a token issued before its user was last
//! disabled is refused (`auth::caller`), and whole seconds could not tell
//! a token from just before a disabling from one just after re-enabling.
//!
//! Refresh tokens are 32 random bytes (base64url, no padding) that mean
//! nothing by themselves; only their SHA-256 (lower-case hex) is stored, so
//! a leaked table does not hand out sessions.
//!
//! The JWT crypto backend is aws-lc-rs, chosen by the `aws_lc_rs` feature of
//! `jsonwebtoken`; with exactly one backend feature enabled the crate picks
//! it itself, so nothing has to be installed at start-up.

use std::fmt::{self, Write as _};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lru::LruCache;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// `iss` of every token we issue and the only one we accept.
pub const ISSUER: &str = "tickets";
/// `aud` of every token we issue and the only one we accept.
pub const AUDIENCE: &str = "tickets-api";
/// Lifetime of an access token in seconds (15 minutes).
pub const ACCESS_TOKEN_TTL_SECS: i64 = 900;
/// `typ` claim of access tokens.
pub const ACCESS_TYP: &str = "access";
/// Shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
const LEEWAY_SECS: u64 = 5;
const REFRESH_TOKEN_BYTES: usize = 32;
/// Access tokens remembered once verified (see [`JwtKeys::access_subject`]).
const VERIFIED_TOKENS: usize = 4096;

/// Token errors; `Display` says nothing about why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("JWT secret must be at least {min} bytes", min = MIN_SECRET_BYTES)]
    SecretTooShort,
    #[error("invalid or expired token")]
    Invalid,
    #[error("could not issue token")]
    Issue,
}

/// Claims of an access token. `sub` is the user's UUID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    /// Not before: the issue time. Absent from tokens of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The issue time in milliseconds; tokens without it count from the
    /// start of their `iat` second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    pub iss: String,
    pub aud: String,
    pub jti: String,
    pub typ: String,
}

/// Signing and verification keys plus the pinned validation rules; kept in
/// application state.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens that verified, by their whole text: what they say and their expiry.
    verified: Mutex<LruCache<String, (Subject, i64)>>,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys").field("algorithm", &Algorithm::HS256).finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Builds HS256 keys from `secret`.
    ///
    /// # Errors
    ///
    /// [`TokenError::SecretTooShort`] if `secret` has fewer than 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self, TokenError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(TokenError::SecretTooShort);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // `iat` is not checked by jsonwebtoken; `AccessClaims` requires it.
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let verified = LruCache::new(NonZeroUsize::new(VERIFIED_TOKENS).unwrap_or(NonZeroUsize::MIN));
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: Mutex::new(verified),
        })
    }

    /// Issues an access token for `user_id` valid from `now` for
    /// [`ACCESS_TOKEN_TTL_SECS`]; returns the token and its lifetime in
    /// seconds.
    ///
    /// # Errors
    ///
    /// [`TokenError::Issue`] if signing fails.
    pub fn issue_access(&self, user_id: Uuid, now: DateTime<Utc>) -> Result<(String, i64), TokenError> {
        let iat = now.timestamp();
        let claims = AccessClaims {
            sub: user_id.to_string(),
            exp: iat + ACCESS_TOKEN_TTL_SECS,
            iat,
            nbf: Some(iat),
            iat_ms: Some(now.timestamp_millis()),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: Uuid::new_v4().to_string(),
            typ: ACCESS_TYP.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Issue)?;
        Ok((token, ACCESS_TOKEN_TTL_SECS))
    }

    /// Verifies an access token against the system clock and returns its
    /// claims; `sub` is then known to be a UUID.
    ///
    /// # Errors
    ///
    /// [`TokenError::Invalid`] for a bad signature or algorithm, a wrong
    /// issuer, audience or `typ`, a missing claim, expiry, or a `sub` that is
    /// not a UUID.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation).map_err(|e| {
            tracing::debug!(error.kind = ?e.kind(), "access token refused");
            TokenError::Invalid
        })?;
        let claims = data.claims;
        if claims.typ != ACCESS_TYP || Uuid::parse_str(&claims.sub).is_err() {
            return Err(TokenError::Invalid);
        }
        // Only tokens we could have issued: none from the future, none that
        // lives longer than ours do. A token dated ahead would otherwise
        // outlive a later disabling, which counts from `iat`.
        let now = Utc::now().timestamp();
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        if claims.iat > now.saturating_add(leeway) || claims.exp.saturating_sub(claims.iat) > ACCESS_TOKEN_TTL_SECS {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// The user an access token names, as [`Self::verify_access`] finds it.
    /// A token that verified is remembered by its exact text
    /// until it expires, so the requests of a session check its signature
    /// and decode its claims once (that was a twentieth of a list page's
    /// CPU); a token is never accepted past its `exp`, which is stricter
    /// than the first check's leeway.
    ///
    /// # Errors
    ///
    /// As [`Self::verify_access`].
    pub fn access_subject(&self, token: &str) -> Result<Subject, TokenError> {
        let now = Utc::now().timestamp();
        let lock = || self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&(subject, exp)) = lock().get(token) {
            if now < exp {
                return Ok(subject);
            }
        }
        let claims = self.verify_access(token)?;
        let id = Uuid::parse_str(&claims.sub).map_err(|_| TokenError::Invalid)?;
        let issued_ms = claims.iat_ms.filter(|ms| ms.div_euclid(1000) == claims.iat).unwrap_or(claims.iat * 1000);
        let issued = DateTime::from_timestamp_millis(issued_ms).ok_or(TokenError::Invalid)?;
        let subject = Subject { id, issued };
        // Not remembered before its `nbf`: it is refused again until then.
        if now < claims.exp && claims.nbf.is_none_or(|nbf| nbf <= now) {
            lock().put(token.to_owned(), (subject, claims.exp));
        }
        Ok(subject)
    }
}

/// Whom an access token names, and when it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub id: Uuid,
    pub issued: DateTime<Utc>,
}

/// Creates a refresh token: returns the token to hand to the client and the
/// hash to store (see [`hash_refresh_token`]).
pub fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; REFRESH_TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// The stored form of a refresh token: lower-case hex SHA-256 of its text.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    fn keys() -> JwtKeys {
        JwtKeys::new(SECRET).unwrap()
    }

    fn claims(user: Uuid) -> AccessClaims {
        let iat = Utc::now().timestamp();
        AccessClaims {
            sub: user.to_string(),
            exp: iat + 600,
            iat,
            nbf: Some(iat),
            iat_ms: None,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: Uuid::new_v4().to_string(),
            typ: ACCESS_TYP.into(),
        }
    }

    #[test]
    fn tokens_are_remembered_only_while_valid() {
        let keys = keys();
        let user = Uuid::new_v4();
        let remembered = || keys.verified.lock().unwrap().len();
        let token = sign_with(Algorithm::HS256, &claims(user));
        assert_eq!(keys.access_subject(&token).unwrap().id, user);
        assert_eq!(keys.access_subject(&token).unwrap().id, user);
        assert_eq!(remembered(), 1);

        // Past its `exp` but inside the leeway: accepted, never remembered.
        let mut late = claims(user);
        late.exp = Utc::now().timestamp() - 2;
        let late = sign_with(Algorithm::HS256, &late);
        assert_eq!(keys.access_subject(&late).unwrap().id, user);
        assert_eq!(remembered(), 1);

        // Refusals are not remembered, and a remembered token's text must
        // match exactly.
        for refused in [format!("{token}x"), sign_with(Algorithm::HS512, &claims(user)), String::new()] {
            assert!(keys.access_subject(&refused).is_err());
            assert!(keys.access_subject(&refused).is_err());
        }
        assert_eq!(remembered(), 1);
    }

    fn sign_with(alg: Algorithm, claims: &AccessClaims) -> String {
        let key = EncodingKey::from_secret(SECRET);
        jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
    }

    /// Builds `header.claims.signature` by hand, HMAC-SHA256 signed with
    /// our secret whatever the header says.
    fn forge(header_json: &str, claims: &AccessClaims, signed: bool) -> String {
        let header = URL_SAFE_NO_PAD.encode(header_json);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let message = format!("{header}.{body}");
        let signature = if signed {
            let key = EncodingKey::from_secret(SECRET);
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap()
        } else {
            String::new()
        };
        format!("{message}.{signature}")
    }

    #[test]
    fn issue_then_verify() {
        let user = Uuid::new_v4();
        let (token, expires_in) = keys().issue_access(user, Utc::now()).unwrap();
        assert_eq!(expires_in, 900);
        let claims = keys().verify_access(&token).unwrap();
        assert_eq!(claims.sub, user.to_string());
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!((claims.iss.as_str(), claims.aud.as_str()), (ISSUER, AUDIENCE));
        assert_eq!(claims.typ, "access");
        assert!(Uuid::parse_str(&claims.jti).is_ok());
        // A hand-made token with the same claims also passes (the forge
        // helper is sound), so the refusals below are about what they change.
        let forged = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &claims, true);
        assert!(keys().verify_access(&forged).is_ok());
    }

    #[test]
    fn tokens_are_not_valid_before_their_nbf() {
        let keys = keys();
        let user = Uuid::new_v4();
        let (issued, _) = keys.issue_access(user, Utc::now()).unwrap();
        let stated = keys.verify_access(&issued).unwrap();
        assert_eq!(stated.nbf, Some(stated.iat));
        assert_eq!(stated.iat_ms.map(|ms| ms.div_euclid(1000)), Some(stated.iat));

        let mut early = claims(user);
        early.nbf = Some(Utc::now().timestamp() + 60);
        let early = sign_with(Algorithm::HS256, &early);
        assert!(keys.verify_access(&early).is_err());
        assert!(keys.access_subject(&early).is_err());
        // Within the clock leeway, as for `exp`.
        let mut skewed = claims(user);
        skewed.nbf = Some(Utc::now().timestamp() + 2);
        assert!(keys.access_subject(&sign_with(Algorithm::HS256, &skewed)).is_ok());
        // Tokens of older versions carry no `nbf` and count from their `iat` second.
        let mut old = claims(user);
        old.nbf = None;
        let subject = keys.access_subject(&sign_with(Algorithm::HS256, &old)).unwrap();
        assert_eq!(subject.issued.timestamp_millis(), old.iat * 1000);
    }

    #[test]
    fn tokens_from_the_future_or_living_too_long_are_refused() {
        let keys = keys();
        let user = Uuid::new_v4();
        let later = Utc::now().timestamp() + 400 * 86_400;
        let mut ahead = claims(user);
        (ahead.iat, ahead.nbf, ahead.exp) = (later, None, later + 600);
        let ahead = sign_with(Algorithm::HS256, &ahead);
        assert!(keys.verify_access(&ahead).is_err());
        assert!(keys.access_subject(&ahead).is_err());
        let mut lasting = claims(user);
        lasting.exp = lasting.iat + ACCESS_TOKEN_TTL_SECS + 1;
        assert!(keys.verify_access(&sign_with(Algorithm::HS256, &lasting)).is_err());
        let mut skewed = claims(user);
        skewed.iat += 2;
        assert!(keys.verify_access(&sign_with(Algorithm::HS256, &skewed)).is_ok(), "within the leeway");
    }

    #[test]
    fn secret_must_be_long_enough() {
        assert!(matches!(JwtKeys::new(&[7u8; 31]), Err(TokenError::SecretTooShort)));
        assert!(JwtKeys::new(&[7u8; 32]).is_ok());
    }

    #[test]
    fn expired_token_is_refused() {
        let an_hour_ago = Utc::now() - Duration::hours(1);
        let (token, _) = keys().issue_access(Uuid::new_v4(), an_hour_ago).unwrap();
        assert!(matches!(keys().verify_access(&token), Err(TokenError::Invalid)));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let other = JwtKeys::new(b"another-secret-another-secret-another").unwrap();
        let (token, _) = other.issue_access(Uuid::new_v4(), Utc::now()).unwrap();
        assert!(keys().verify_access(&token).is_err());
    }

    #[test]
    fn wrong_audience_issuer_typ_or_sub_is_refused() {
        let base = claims(Uuid::new_v4());
        let variants = [
            AccessClaims { aud: "other-api".into(), ..base.clone() },
            AccessClaims { iss: "someone-else".into(), ..base.clone() },
            AccessClaims { typ: "refresh".into(), ..base.clone() },
            AccessClaims { sub: "not-a-uuid".into(), ..base.clone() },
        ];
        assert!(keys().verify_access(&sign_with(Algorithm::HS256, &base)).is_ok());
        for claims in &variants {
            let token = sign_with(Algorithm::HS256, claims);
            assert!(keys().verify_access(&token).is_err(), "{claims:?}");
        }
    }

    #[test]
    fn missing_claim_is_refused() {
        let base = claims(Uuid::new_v4());
        let mut json = serde_json::to_value(&base).unwrap();
        json.as_object_mut().unwrap().remove("iat");
        let key = EncodingKey::from_secret(SECRET);
        let token = jsonwebtoken::encode(&Header::default(), &json, &key).unwrap();
        assert!(keys().verify_access(&token).is_err());
    }

    #[test]
    fn other_algorithms_are_refused() {
        let base = claims(Uuid::new_v4());
        let none = forge(r#"{"alg":"none","typ":"JWT"}"#, &base, false);
        assert!(keys().verify_access(&none).is_err());
        let none_signed = forge(r#"{"alg":"none","typ":"JWT"}"#, &base, true);
        assert!(keys().verify_access(&none_signed).is_err());
        let rs256 = forge(r#"{"alg":"RS256","typ":"JWT"}"#, &base, true);
        assert!(keys().verify_access(&rs256).is_err());
        let hs512 = sign_with(Algorithm::HS512, &base);
        assert!(keys().verify_access(&hs512).is_err());
    }

    #[test]
    fn refresh_tokens_are_opaque_and_hashed() {
        let (token, hash) = new_refresh_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, hash);
        assert_eq!(hash, hash_refresh_token(&token));
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let (token2, hash2) = new_refresh_token();
        assert_ne!((token.as_str(), hash.as_str()), (token2.as_str(), hash2.as_str()));
        assert!(keys().verify_access(&token).is_err());
        assert_eq!(hash_refresh_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn debug_and_errors_hide_secrets() {
        let printed = format!("{:?}", keys());
        assert!(!printed.contains("0123456789abcdef"));
        assert!(!printed.contains("48, 49")); // secret bytes as a list
        assert_eq!(TokenError::Invalid.to_string(), "invalid or expired token");
    }
}
