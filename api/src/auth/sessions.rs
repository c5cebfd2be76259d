//! Refresh-token sessions. Tokens are opaque and stored only as hashes;
//! each use rotates the token within its family, and presenting a token
//! that was already used revokes the whole family (it was stolen or
//! replayed, and we cannot tell which copy is the thief's).

use chrono::{DateTime, Duration, SubsecRound, Utc};
use commands::db::Db;
use commands::on_db;
use uuid::Uuid;

use super::tokens::{hash_refresh_token, new_refresh_token};

/// How long an unused refresh token stays valid.
const REFRESH_TTL: Duration = Duration::days(30);

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Unknown or expired.
    Invalid,
    /// Already used or revoked: the family is now revoked.
    Reused,
}

/// A refresh token just spent: whose, its family, and when it was issued.
#[derive(Debug, Clone, Copy)]
pub struct Spent {
    pub user: Uuid,
    pub family: Uuid,
    pub issued: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Sessions {
    db: Db,
}

impl Sessions {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Starts a new token, in `family` when rotating, else in a new family.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn issue(&self, user: Uuid, family: Option<Uuid>) -> Result<String, sqlx::Error> {
        const SQL: &str = "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) \
            VALUES ($1, $2, $3, $4, $5)";
        let (token, hash) = new_refresh_token();
        let now = Utc::now().trunc_subsecs(6);
        let family = family.unwrap_or_else(Uuid::new_v4);
        on_db!(&self.db, pool => sqlx::query(SQL).bind(&hash).bind(user).bind(family).bind(now).bind(now + REFRESH_TTL)
            .execute(pool).await.map(|_| ()))?;
        Ok(token)
    }

    /// Spends `token`; returns its user and family for the next token.
    ///
    /// # Errors
    /// The outer error is the store's; the inner says why the token is refused.
    pub async fn spend(&self, token: &str) -> Result<Result<Spent, Refused>, sqlx::Error> {
        const SPEND: &str = "UPDATE refresh_tokens SET used_at = $2 \
            WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
            RETURNING user_id, family_id, created_at";
        const FIND: &str = "SELECT family_id, used_at IS NOT NULL OR revoked_at IS NOT NULL FROM refresh_tokens \
            WHERE token_hash = $1";
        let hash = hash_refresh_token(token);
        let now = Utc::now().trunc_subsecs(6);
        let spent: Option<(Uuid, Uuid, DateTime<Utc>)> =
            on_db!(&self.db, pool => sqlx::query_as(SPEND).bind(&hash).bind(now).fetch_optional(pool).await)?;
        if let Some((user, family, issued)) = spent {
            return Ok(Ok(Spent { user, family, issued }));
        }
        let known: Option<(Uuid, bool)> =
            on_db!(&self.db, pool => sqlx::query_as(FIND).bind(&hash).fetch_optional(pool).await)?;
        match known {
            Some((family, true)) => {
                self.revoke_family(family).await?;
                tracing::warn!(family = %family, "refresh token reused; family revoked");
                Ok(Err(Refused::Reused))
            }
            _ => Ok(Err(Refused::Invalid)),
        }
    }

    /// Whether any token of the family has been revoked: a concurrent reuse
    /// may revoke it just after this request spent its token.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn family_revoked(&self, family: Uuid) -> Result<bool, sqlx::Error> {
        const SQL: &str = "SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NOT NULL";
        let revoked: i64 = on_db!(&self.db, pool => sqlx::query_scalar(SQL).bind(family).fetch_one(pool).await)?;
        Ok(revoked > 0)
    }

    /// Revokes the family `token` belongs to; false when it is unknown.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn revoke(&self, token: &str) -> Result<bool, sqlx::Error> {
        const FIND: &str = "SELECT family_id FROM refresh_tokens WHERE token_hash = $1";
        let hash = hash_refresh_token(token);
        let family: Option<Uuid> =
            on_db!(&self.db, pool => sqlx::query_scalar(FIND).bind(&hash).fetch_optional(pool).await)?;
        match family {
            Some(family) => self.revoke_family(family).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn revoke_family(&self, family: Uuid) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";
        let now = Utc::now().trunc_subsecs(6);
        on_db!(&self.db, pool => sqlx::query(SQL).bind(family).bind(now).execute(pool).await.map(|_| ()))
    }

    /// Ends every session of a user (disabled, or demoted).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn revoke_user(&self, user: Uuid) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";
        let now = Utc::now().trunc_subsecs(6);
        on_db!(&self.db, pool => sqlx::query(SQL).bind(user).bind(now).execute(pool).await.map(|_| ()))
    }
}
