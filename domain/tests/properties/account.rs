//! The Account aggregate against a model of its rules: an email registers
//! once, under the id derived from it; nothing happens to an account that
//! does not exist; a role, a password or a disabled flag set to what it
//! already is records nothing.

use domain::account::{Account, AccountCommand, AccountError, AccountEvent};
use domain::values::{DisplayName, Email, Role, UserId};
use proptest::prelude::*;
use proptest::sample::select;

use crate::support::{Stream, CASES};

#[derive(Debug, Default)]
struct Model {
    registered: bool,
    role: Option<Role>,
    password_hash: String,
    disabled: bool,
    version: u64,
}

impl Model {
    fn refusal(&self, command: &AccountCommand) -> Option<AccountError> {
        match command {
            AccountCommand::Register { .. } => self.registered.then_some(AccountError::EmailTaken),
            _ => (!self.registered).then_some(AccountError::NotFound),
        }
    }

    fn expected(&self, command: &AccountCommand) -> Option<AccountEvent> {
        match command.clone() {
            AccountCommand::Register { email, display_name, password_hash, role } => {
                Some(AccountEvent::AccountRegistered {
                    id: UserId::for_email(&email),
                    email,
                    display_name: display_name.as_str().to_owned(),
                    password_hash,
                    role,
                })
            }
            AccountCommand::ChangeRole { to } => {
                let from = self.role.expect("registered");
                (from != to).then_some(AccountEvent::AccountRoleChanged { from, to })
            }
            AccountCommand::ChangePassword { password_hash } => {
                (password_hash != self.password_hash).then_some(AccountEvent::AccountPasswordChanged { password_hash })
            }
            AccountCommand::Disable => (!self.disabled).then_some(AccountEvent::AccountDisabled),
            AccountCommand::Enable => self.disabled.then_some(AccountEvent::AccountEnabled),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        assert!(self.registered != matches!(event, AccountEvent::AccountRegistered { .. }), "{event:?}");
        self.version += 1;
        match event {
            AccountEvent::AccountRegistered { role, password_hash, .. } => {
                (self.registered, self.role, self.password_hash) = (true, Some(*role), password_hash.clone());
            }
            AccountEvent::AccountRoleChanged { from, to } => {
                assert_eq!(Some(*from), self.role);
                assert_ne!(from, to);
                self.role = Some(*to);
            }
            AccountEvent::AccountPasswordChanged { password_hash } => {
                assert_ne!(*password_hash, self.password_hash);
                self.password_hash.clone_from(password_hash);
            }
            AccountEvent::AccountDisabled => {
                assert!(!self.disabled);
                self.disabled = true;
            }
            AccountEvent::AccountEnabled => {
                assert!(self.disabled);
                self.disabled = false;
            }
        }
    }
}

fn role() -> impl Strategy<Value = Role> {
    select(vec![Role::Employee, Role::Admin])
}

/// Plausible hashes and implausible ones: the aggregate stores what the
/// write side computed and judges none of it.
fn password_hash() -> impl Strategy<Value = String> {
    select(vec!["$argon2id$a", "$argon2id$b", "", "not a hash"]).prop_map(str::to_owned)
}

/// Addresses as people type them, some of which the value type refuses.
fn register() -> impl Strategy<Value = AccountCommand> {
    let email =
        select(vec![" Ada@Example.com", "ada@example.com", "grace@example.org", "no-at-sign", "ünï@exämple.com"]);
    let name = select(vec!["Ada", "  Grace Hopper ", "", "tab\tname"]);
    (email, name, password_hash(), role()).prop_filter_map(
        "a value the API would refuse",
        |(email, name, password_hash, role)| {
            Some(AccountCommand::Register {
                email: Email::parse(email).ok()?,
                display_name: DisplayName::parse(name).ok()?,
                password_hash,
                role,
            })
        },
    )
}

fn command() -> impl Strategy<Value = AccountCommand> {
    prop_oneof![
        1 => register(),
        2 => role().prop_map(|to| AccountCommand::ChangeRole { to }),
        2 => password_hash().prop_map(|password_hash| AccountCommand::ChangePassword { password_hash }),
        2 => Just(AccountCommand::Disable),
        2 => Just(AccountCommand::Enable),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn every_account_command_keeps_the_rules(commands in prop::collection::vec(command(), 0..40)) {
        let mut stream = Stream::<Account>::new();
        let mut model = Model::default();
        for command in commands {
            let refusal = model.refusal(&command);
            let expected = refusal.is_none().then(|| model.expected(&command));
            match stream.handle(command) {
                Err(error) => prop_assert_eq!(Some(error), refusal),
                Ok(events) => {
                    prop_assert_eq!(refusal, None);
                    prop_assert_eq!(Some(events.first().cloned()), expected);
                    prop_assert!(events.len() <= 1, "one event at most: {:?}", events);
                    events.iter().for_each(|event| model.apply(event));
                }
            }
            prop_assert_eq!(stream.live.version(), model.version);
        }
    }
}
