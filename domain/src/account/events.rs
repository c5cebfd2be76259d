//! What happened to an account. Stable names; see `ticket::events`.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::values::{Email, Role, UserId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    AccountRegistered { id: UserId, email: Email, display_name: String, password_hash: String, role: Role },
    AccountRoleChanged { from: Role, to: Role },
    AccountPasswordChanged { password_hash: String },
    AccountDisabled,
    AccountEnabled,
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        let name = match self {
            AccountEvent::AccountRegistered { .. } => "AccountRegistered",
            AccountEvent::AccountRoleChanged { .. } => "AccountRoleChanged",
            AccountEvent::AccountPasswordChanged { .. } => "AccountPasswordChanged",
            AccountEvent::AccountDisabled => "AccountDisabled",
            AccountEvent::AccountEnabled => "AccountEnabled",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
