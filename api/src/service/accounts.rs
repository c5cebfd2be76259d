//! Accounts and sessions: register, sign in, rotate, sign out, roles.

use chrono::Utc;
use commands::write::Actor;
use domain::account::AccountCommand;
use domain::values::{DisplayName, Email, Role, UserId};
use projections::read::{Table, UserRow};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::auth::caller::issued_since_disabling;
use crate::auth::password::check_policy;
use crate::auth::sessions::Refused;
use crate::error::{ApiError, ApiResult};
use crate::state::App;

/// Tokens and the user they belong to.
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub user: UserRow,
}

const BAD_CREDENTIALS: &str = "invalid email or password";

impl App {
    /// # Errors
    /// `BAD_USER_INPUT` for an invalid email, name or password, or a taken email.
    pub async fn register(
        &self,
        email: &str,
        password: SecretString,
        display_name: &str,
        actor: &Actor,
    ) -> ApiResult<Session> {
        let email = Email::parse(email)?;
        let display_name = DisplayName::parse(display_name)?;
        check_policy(password.expose_secret(), email.as_str(), display_name.as_str())
            .map_err(|e| ApiError::BadInput(e.to_string()))?;
        let user = self.create_account(email, display_name, password, Role::Employee, actor).await?;
        self.start_session(user, None).await.map_err(ApiError::after_commit)
    }

    /// Registers an account. Whether the address is taken is decided by
    /// its event stream (the id is derived from the address), so a lagging
    /// or rebuilding read model cannot let a second registration through
    /// nor turn a present account away.
    async fn create_account(
        &self,
        email: Email,
        display_name: DisplayName,
        password: SecretString,
        role: Role,
        actor: &Actor,
    ) -> ApiResult<UserRow> {
        let id = UserId::for_email(&email);
        if self.account_state(id).await?.exists() {
            return Err(ApiError::BadInput("an account with this email already exists".into()));
        }
        self.refuse_look_alikes(&email).await?;
        let password_hash = self.hasher.hash(password).await.map_err(ApiError::internal)?;
        let registered = UserRow {
            id: id.as_uuid(),
            email: email.as_str().to_owned(),
            display_name: display_name.as_str().to_owned(),
            role: role.as_str().to_owned(),
            disabled: false,
            password_hash: password_hash.clone(),
            created_at: chrono::Utc::now(),
            version: 1,
            disabled_at: None,
        };
        let command = AccountCommand::Register { email, display_name, password_hash, role };
        let version = self.write.account(id, command, actor).await?;
        self.user_after(id.as_uuid(), version, |_| Some(registered)).await
    }

    async fn account_state(&self, id: UserId) -> ApiResult<domain::account::Account> {
        self.write.account_state(id).await.map_err(ApiError::internal)
    }

    /// A new address must not look like an existing one. The address alone
    /// settles it for every account registered since this check exists
    /// (`Email::check_not_lookalike`: one script per part, no imitation of
    /// ASCII), whatever the read models show. Accounts registered before
    /// could hold any non-ASCII address; those are long projected, so their
    /// skeletons are compared from the read model.
    async fn refuse_look_alikes(&self, email: &Email) -> ApiResult<()> {
        email.check_not_lookalike()?;
        let skeleton = email.skeleton();
        for existing in self.read.non_ascii_emails().await? {
            if Email::parse(&existing).is_ok_and(|other| other.skeleton() == skeleton) {
                return Err(ApiError::BadInput("an account with a look-alike email already exists".into()));
            }
        }
        Ok(())
    }

    /// The user as of `version`; while the projector lags, `expected`
    /// builds it from the older row and what the command wrote.
    async fn user_after(
        &self,
        id: Uuid,
        version: u64,
        expected: impl FnOnce(Option<UserRow>) -> Option<UserRow>,
    ) -> ApiResult<UserRow> {
        let visible = self.projected(Table::Users, id, version, false).await;
        // Also when the projector runs in another replica.
        self.read.forget_access(id, i64::try_from(version).unwrap_or(i64::MAX));
        // The command's events are durable: a failed read answers from them.
        let row = match self.read.user(id).await {
            Ok(row) if visible => row,
            Ok(row) => expected(row),
            Err(error) => Some(expected(None).ok_or_else(|| ApiError::from(error).after_commit())?),
        };
        row.ok_or_else(|| ApiError::CommittedUnconfirmed("user missing after write".into()))
    }

    /// Unknown emails, wrong passwords and disabled accounts all answer the
    /// same, after the same amount of hashing work. An over-long email is
    /// refused before the throttles record anything about it.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` for an email over 254 bytes, `UNAUTHENTICATED` for
    /// bad credentials, `TOO_MANY_REQUESTS` when throttled.
    pub async fn login(&self, email: &str, password: SecretString, client: &str) -> ApiResult<Session> {
        let normalised =
            Email::normalise(email).ok_or_else(|| ApiError::BadInput("email address is too long".into()))?;
        self.limits.check(Some(&normalised), client)?;
        let user = match Email::parse(&normalised) {
            Ok(parsed) => self.account_by_email(&parsed, email).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().map(|user| user.password_hash.clone());
        let matches = self.hasher.verify(password, hash).await;
        match user {
            Some(user) if matches && !user.disabled => self.start_session(user, None).await,
            _ => Err(ApiError::Unauthenticated(BAD_CREDENTIALS)),
        }
    }

    /// The account of an address, also when it was registered before
    /// addresses were NFKC-normalised and is stored in its older form.
    async fn account_by_email(&self, email: &Email, typed: &str) -> ApiResult<Option<UserRow>> {
        if let Some(user) = self.read.user_by_email(email.as_str()).await? {
            return Ok(Some(user));
        }
        match Email::legacy_form(typed) {
            Some(legacy) if legacy != email.as_str() => Ok(self.read.user_by_email(&legacy).await?),
            _ => Ok(None),
        }
    }

    async fn start_session(&self, user: UserRow, family: Option<Uuid>) -> ApiResult<Session> {
        let (access_token, expires_in) = self.jwt.issue_access(user.id, Utc::now()).map_err(ApiError::internal)?;
        let refresh_token = self.sessions.issue(user.id, family).await?;
        Ok(Session { access_token, refresh_token, expires_in, user })
    }

    /// # Errors
    /// `UNAUTHENTICATED` for an unknown, expired, reused or revoked token.
    pub async fn refresh(&self, token: &str, client: &str) -> ApiResult<Session> {
        self.limits.check(None, client)?;
        let spent = match self.sessions.spend(token).await? {
            Ok(spent) => spent,
            Err(Refused::Invalid) => return Err(ApiError::Unauthenticated("invalid refresh token")),
            Err(Refused::Reused) => return Err(ApiError::Unauthenticated("refresh token already used; sign in again")),
        };
        let family = spent.family;
        // A token from before the latest disabling was revoked by it; this
        // also refuses one whose revocation a racing refresh got ahead of.
        let session = match self.read.user(spent.user).await? {
            Some(user) if !user.disabled && issued_since_disabling(spent.issued, user.disabled_at) => {
                self.start_session(user, Some(family)).await?
            }
            _ => return Err(ApiError::Unauthenticated("invalid refresh token")),
        };
        // A reuse racing this request revokes the family; the token just
        // issued joined it afterwards, so look again and revoke it too.
        if self.sessions.family_revoked(family).await? {
            self.sessions.revoke(&session.refresh_token).await?;
            return Err(ApiError::Unauthenticated("refresh token already used; sign in again"));
        }
        Ok(session)
    }

    /// # Errors
    /// Only when the store fails; logging out twice is not an error.
    pub async fn logout(&self, token: &str) -> ApiResult<bool> {
        Ok(self.sessions.revoke(token).await?)
    }

    /// # Errors
    /// `NOT_FOUND` for an unknown user; `BAD_USER_INPUT` when this would leave no admin.
    pub async fn set_role(&self, user: &str, role: Role, actor: &Actor) -> ApiResult<UserRow> {
        let id = UserId::parse(user)?;
        self.changing_access(actor, || async {
            let target = self.existing_account(id).await?;
            if role != Role::Admin {
                self.keep_an_admin(&target).await?;
            }
            let version = self.write.account(id, AccountCommand::ChangeRole { to: role }, actor).await?;
            self.user_after(id.as_uuid(), version, |row| {
                row.map(|row| UserRow { role: role.as_str().to_owned(), ..row })
            })
            .await
        })
        .await
    }

    /// Runs a change of who may do what under a lease shared by every
    /// replica, so the last-admin check and the change it guards cannot
    /// interleave with another's. Each change waits for its own projection
    /// before giving the lease back, so the next check reads it.
    async fn changing_access<T, F, Fut>(&self, actor: &Actor, change: F) -> ApiResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ApiResult<T>>,
    {
        const TTL: std::time::Duration = std::time::Duration::from_secs(30);
        const WAIT: std::time::Duration = std::time::Duration::from_secs(15);
        // The caller was found to be an admin before waiting for the lease;
        // another admin may have demoted them meanwhile.
        let checked = || async {
            if let Some(admin) = actor.user_id {
                let still_admin = self.read.user(admin.as_uuid()).await?;
                if !still_admin.is_some_and(|u| u.role == Role::Admin.as_str() && !u.disabled) {
                    return Err(ApiError::Forbidden);
                }
            }
            change().await
        };
        match commands::lease::with_lease(self.read.db(), "access-changes", TTL, WAIT, checked).await {
            Ok(result) => result,
            Err(commands::lease::LeaseError::Busy(_)) => {
                Err(ApiError::Conflict("another access change is in progress; try again".into()))
            }
            Err(error) => Err(ApiError::internal(error)),
        }
    }

    /// # Errors
    /// `NOT_FOUND` for an unknown user; `BAD_USER_INPUT` when this would leave no admin.
    pub async fn set_disabled(&self, user: &str, disabled: bool, actor: &Actor) -> ApiResult<UserRow> {
        let id = UserId::parse(user)?;
        self.changing_access(actor, || async {
            let target = self.existing_account(id).await?;
            let command = if disabled {
                self.keep_an_admin(&target).await?;
                AccountCommand::Disable
            } else {
                AccountCommand::Enable
            };
            let version = self.write.account(id, command, actor).await?;
            if disabled {
                self.sessions.revoke_user(id.as_uuid()).await.map_err(|e| ApiError::from(e).after_commit())?;
            }
            self.user_after(id.as_uuid(), version, |row| row.map(|row| UserRow { disabled, ..row })).await
        })
        .await
    }

    /// The account as its events say; `NOT_FOUND` when it was never registered.
    async fn existing_account(&self, id: UserId) -> ApiResult<domain::account::Account> {
        let account = self.account_state(id).await?;
        account.exists().then_some(account).ok_or(ApiError::NotFound("user"))
    }

    /// Counting the admins is a question across accounts, so it is asked of
    /// the read model; the lease of `changing_access` and each change
    /// waiting for its projection keep that count current.
    async fn keep_an_admin(&self, target: &domain::account::Account) -> ApiResult<()> {
        if target.role() == Some(Role::Admin) && !target.disabled() && self.read.active_admins().await? <= 1 {
            return Err(ApiError::BadInput("cannot remove the last admin".into()));
        }
        Ok(())
    }

    /// Start-up's bootstrap admin: created when missing, otherwise left as
    /// it is, so what admins later decide about it (a new password, a
    /// demotion) is not undone at the next restart. Whether it exists is
    /// asked of its event stream: after an interrupted rebuild the read
    /// models may not show it yet.
    ///
    /// # Errors
    /// Invalid input or a store failure.
    pub async fn bootstrap_admin(&self, email: &str, password: SecretString) -> ApiResult<UserId> {
        let id = UserId::for_email(&Email::parse(email)?);
        if self.account_state(id).await?.exists() {
            return Ok(id);
        }
        match self.ensure_admin(email, "Administrator", password).await {
            Ok(_) => Ok(id),
            // Another replica starting at the same time registered it first.
            Err(_) if self.account_state(id).await?.exists() => Ok(id),
            Err(error) => Err(error),
        }
    }

    /// Creates an admin, or makes an existing account an admin with this
    /// password; running it again changes nothing. Decided from the
    /// account's events, not the read models.
    ///
    /// # Errors
    /// Invalid input or a store failure.
    pub async fn ensure_admin(&self, email: &str, display_name: &str, password: SecretString) -> ApiResult<UserRow> {
        let actor = Actor::system("bootstrap");
        let email = Email::parse(email)?;
        let display_name = DisplayName::parse(display_name)?;
        check_policy(password.expose_secret(), email.as_str(), display_name.as_str())
            .map_err(|e| ApiError::BadInput(e.to_string()))?;
        let id = UserId::for_email(&email);
        let account = self.account_state(id).await?;
        if !account.exists() {
            return self.create_account(email, display_name, password, Role::Admin, &actor).await;
        }
        let mut version = account.version();
        if !self.hasher.verify(password.clone(), Some(account.password_hash().to_owned())).await {
            let password_hash = self.hasher.hash(password).await.map_err(ApiError::internal)?;
            version = self.write.account(id, AccountCommand::ChangePassword { password_hash }, &actor).await?;
        }
        for command in [AccountCommand::ChangeRole { to: Role::Admin }, AccountCommand::Enable] {
            version = self.write.account(id, command, &actor).await?;
        }
        self.user_after(id.as_uuid(), version, |row| row).await
    }
}
