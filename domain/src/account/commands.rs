//! What may be asked of an account.

use crate::values::{DisplayName, Email, Role};

#[derive(Debug, Clone)]
pub enum AccountCommand {
    /// Create the account; the stream id is derived from the email.
    Register {
        email: Email,
        display_name: DisplayName,
        /// An argon2id PHC string, computed before the command.
        password_hash: String,
        role: Role,
    },
    ChangeRole {
        to: Role,
    },
    ChangePassword {
        password_hash: String,
    },
    Disable,
    Enable,
}
