//! The Account aggregate. Cross-account rules (the last admin) are checked
//! by the write side before it sends the command.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::commands::AccountCommand;
use super::events::AccountEvent;
use crate::values::{Role, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccountError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("user not found")]
    NotFound,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    id: Option<UserId>,
    role: Option<Role>,
    password_hash: String,
    disabled: bool,
    version: u64,
}

impl Account {
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the stream holds a registration: decisions about accounts
    /// (is this email taken, is the bootstrap admin there) are made from
    /// this, not from a read model that may lag or be rebuilding.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn role(&self) -> Option<Role> {
        self.role
    }

    pub fn disabled(&self) -> bool {
        self.disabled
    }

    /// The argon2id PHC string of the current password (empty before registration).
    pub fn password_hash(&self) -> &str {
        &self.password_hash
    }

    fn decide(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        if let AccountCommand::Register { email, display_name, password_hash, role } = command {
            if self.id.is_some() {
                return Err(AccountError::EmailTaken);
            }
            return Ok(vec![AccountEvent::AccountRegistered {
                id: UserId::for_email(&email),
                email,
                display_name: display_name.as_str().to_owned(),
                password_hash,
                role,
            }]);
        }
        let role = self.role.ok_or(AccountError::NotFound)?;
        let event = match command {
            AccountCommand::Register { .. } => unreachable!("handled above"),
            AccountCommand::ChangeRole { to } => {
                (to != role).then_some(AccountEvent::AccountRoleChanged { from: role, to })
            }
            AccountCommand::ChangePassword { password_hash } => {
                (password_hash != self.password_hash).then_some(AccountEvent::AccountPasswordChanged { password_hash })
            }
            AccountCommand::Disable => (!self.disabled).then_some(AccountEvent::AccountDisabled),
            AccountCommand::Enable => self.disabled.then_some(AccountEvent::AccountEnabled),
        };
        Ok(event.into_iter().collect())
    }
}

impl Aggregate for Account {
    /// Stored with every event: never rename it.
    const TYPE: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        match event {
            AccountEvent::AccountRegistered { id, password_hash, role, .. } => {
                self.id = Some(id);
                self.role = Some(role);
                self.password_hash = password_hash;
            }
            AccountEvent::AccountRoleChanged { to, .. } => self.role = Some(to),
            AccountEvent::AccountPasswordChanged { password_hash } => self.password_hash = password_hash,
            AccountEvent::AccountDisabled => self.disabled = true,
            AccountEvent::AccountEnabled => self.disabled = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::values::{DisplayName, Email};

    type Given = TestFramework<Account>;

    fn email() -> Email {
        Email::parse("Ada@Example.com").unwrap()
    }

    fn registered(role: Role) -> AccountEvent {
        AccountEvent::AccountRegistered {
            id: UserId::for_email(&email()),
            email: email(),
            display_name: "Ada".into(),
            password_hash: "$argon2id$h".into(),
            role,
        }
    }

    fn register() -> AccountCommand {
        AccountCommand::Register {
            email: email(),
            display_name: DisplayName::parse("Ada").unwrap(),
            password_hash: "$argon2id$h".into(),
            role: Role::Employee,
        }
    }

    #[test]
    fn registering_records_the_account() {
        Given::with(())
            .given_no_previous_events()
            .when(register())
            .then_expect_events(vec![registered(Role::Employee)]);
    }

    #[test]
    fn an_email_registers_once() {
        Given::with(())
            .given(vec![registered(Role::Employee)])
            .when(register())
            .then_expect_error(AccountError::EmailTaken);
    }

    #[test]
    fn role_changes_record_from_and_to() {
        Given::with(())
            .given(vec![registered(Role::Employee)])
            .when(AccountCommand::ChangeRole { to: Role::Admin })
            .then_expect_events(vec![AccountEvent::AccountRoleChanged { from: Role::Employee, to: Role::Admin }]);
        Given::with(())
            .given(vec![registered(Role::Admin)])
            .when(AccountCommand::ChangeRole { to: Role::Admin })
            .then_expect_events(vec![]);
    }

    #[test]
    fn missing_accounts_are_not_found() {
        Given::with(())
            .given_no_previous_events()
            .when(AccountCommand::Disable)
            .then_expect_error(AccountError::NotFound);
    }

    #[test]
    fn disabling_and_enabling_are_idempotent() {
        Given::with(())
            .given(vec![registered(Role::Employee)])
            .when(AccountCommand::Disable)
            .then_expect_events(vec![AccountEvent::AccountDisabled]);
        Given::with(())
            .given(vec![registered(Role::Employee), AccountEvent::AccountDisabled])
            .when(AccountCommand::Disable)
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![registered(Role::Employee), AccountEvent::AccountDisabled])
            .when(AccountCommand::Enable)
            .then_expect_events(vec![AccountEvent::AccountEnabled]);
    }

    #[test]
    fn the_same_password_hash_is_no_change() {
        Given::with(())
            .given(vec![registered(Role::Employee)])
            .when(AccountCommand::ChangePassword { password_hash: "$argon2id$h".into() })
            .then_expect_events(vec![]);
    }
}
