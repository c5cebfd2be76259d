//! The memory of user rows behind the caller check and the user loader:
//! exact for what this process projects, at most `ACCESS_TTL` old for
//! other replicas.

use commands::db::Db;
use commands::write::Actor;
use domain::account::AccountCommand;
use domain::values::{Role, UserId};
use projections::read::{Access, ReadModels, ACCESS_TTL};

use crate::fixture::App;

async fn change(app: &App, id: UserId, command: AccountCommand) {
    app.write.account(id, command, &Actor::system("test-access")).await.expect("account changed");
    app.settle().await;
}

/// What the caller check reads of an `Access`, the time of disabling aside.
fn access(role: &str, disabled: bool) -> Option<(String, bool)> {
    Some((role.to_owned(), disabled))
}

fn role_and_flag(access: Option<Access>) -> Option<(String, bool)> {
    access.map(|access| (access.role, access.disabled))
}

async fn the_local_projector_ends_cached_access_at_once(db: Db) {
    let app = App::new(db.clone());
    // As the server wires it: the read side knows what its projector applied.
    let read = ReadModels::new(app.write.statements().clone(), app.projector.progress())
        .with_projected(app.projector.projected());
    let id = app.register("someone@example.com", Role::Admin).await;
    app.settle().await;
    assert_eq!(role_and_flag(read.access(id.as_uuid()).await.unwrap()), access("ADMIN", false));
    change(&app, id, AccountCommand::ChangeRole { to: Role::Employee }).await;
    assert_eq!(role_and_flag(read.access(id.as_uuid()).await.unwrap()), access("EMPLOYEE", false));
    change(&app, id, AccountCommand::Disable).await;
    assert_eq!(role_and_flag(read.access(id.as_uuid()).await.unwrap()), access("EMPLOYEE", true));
    let disabled_at = read.access(id.as_uuid()).await.unwrap().and_then(|access| access.disabled_at);
    assert!(disabled_at.is_some(), "the time of the disabling is kept");
    assert_eq!(role_and_flag(read.access(uuid::Uuid::new_v4()).await.unwrap()), None);
    // The user loader shares that memory: one user from it, one read.
    let other = app.register("other@example.com", Role::Employee).await;
    app.settle().await;
    change(&app, id, AccountCommand::ChangeRole { to: Role::Admin }).await;
    let mut users = read.users_by_ids(&[id.as_uuid(), other.as_uuid(), uuid::Uuid::new_v4()]).await.unwrap();
    users.sort_by_key(|user| user.email.clone());
    let seen: Vec<(&str, &str, bool)> = users.iter().map(|u| (u.email.as_str(), u.role.as_str(), u.disabled)).collect();
    assert_eq!(seen, [("other@example.com", "EMPLOYEE", false), ("someone@example.com", "ADMIN", true)]);
    assert_eq!(role_and_flag(read.access(id.as_uuid()).await.unwrap()), access("ADMIN", true));
}
test_support::store_test!(the_local_projector_ends_cached_access_at_once);

async fn another_replicas_changes_show_within_the_ttl(db: Db) {
    let app = App::new(db);
    // `app.read` has no projector of its own, like a replica that is not the leader.
    let id = app.register("elsewhere@example.com", Role::Employee).await;
    app.settle().await;
    assert_eq!(role_and_flag(app.read.access(id.as_uuid()).await.unwrap()), access("EMPLOYEE", false));
    change(&app, id, AccountCommand::Disable).await;
    tokio::time::sleep(ACCESS_TTL + std::time::Duration::from_millis(50)).await;
    assert_eq!(role_and_flag(app.read.access(id.as_uuid()).await.unwrap()), access("EMPLOYEE", true));
    // A change this process made itself is forgotten at once.
    change(&app, id, AccountCommand::Enable).await;
    app.read.forget_access(id.as_uuid(), 3);
    assert_eq!(role_and_flag(app.read.access(id.as_uuid()).await.unwrap()), access("EMPLOYEE", false));
}
test_support::store_test!(another_replicas_changes_show_within_the_ttl);

// A read that started before a change this process made (and so returns the
// older row) must not be kept: the next request reads again.
async fn a_forgotten_user_is_not_cached_from_an_older_row(db: Db) {
    let app = App::new(db);
    let id = app.register("racing@example.com", Role::Employee).await;
    app.settle().await;
    assert_eq!(role_and_flag(app.read.access(id.as_uuid()).await.unwrap()), access("EMPLOYEE", false));
    // This process is about to make version 2; the store still shows 1.
    app.read.forget_access(id.as_uuid(), 2);
    assert_eq!(role_and_flag(app.read.access(id.as_uuid()).await.unwrap()), access("EMPLOYEE", false));
    change(&app, id, AccountCommand::ChangeRole { to: Role::Admin }).await;
    assert_eq!(role_and_flag(app.read.access(id.as_uuid()).await.unwrap()), access("ADMIN", false));
}
test_support::store_test!(a_forgotten_user_is_not_cached_from_an_older_row);
