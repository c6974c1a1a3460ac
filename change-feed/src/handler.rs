//! One method per change kind, each ignoring the change by default, and the dispatch that calls
//! them. User methods receive the user's full state after the change.

use shared::changes::{Change, ChangeKind, DirectoryState, GroupState, UserState};

/// Implement the methods for the changes the application cares about.
pub trait ChangeHandler: Send {
    type Error: Send;

    /// A user became active for the first time: create the account, send a welcome.
    fn on_provisioned(
        &mut self,
        _change: &Change,
        _user: &UserState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// A deactivated user is active again.
    fn on_reactivated(
        &mut self,
        _change: &Change,
        _user: &UserState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// Profile fields changed.
    fn on_updated(
        &mut self,
        _change: &Change,
        _user: &UserState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// An active user was deactivated: revoke sessions and access.
    fn on_deprovisioned(
        &mut self,
        _change: &Change,
        _user: &UserState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// A user's personal data was erased: delete what the application keeps of it.
    fn on_erased(
        &mut self,
        _change: &Change,
        _user: &UserState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// Role names granted and revoked (`user.roles` is the new set).
    fn on_roles_changed(
        &mut self,
        _change: &Change,
        _user: &UserState,
        _granted: &[String],
        _revoked: &[String],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// Groups joined and left (`user.groups` is the new set).
    fn on_groups_changed(
        &mut self,
        _change: &Change,
        _user: &UserState,
        _joined: &[String],
        _left: &[String],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// `group.created`, `group.updated` or `group.deleted`.
    fn on_group(
        &mut self,
        _change: &Change,
        _group: &GroupState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// A kind this version does not know (a newer worker's): ignored by default. The reader
    /// has counted it and logged each unknown kind once; its `seq` is stored like any other.
    fn on_other(
        &mut self,
        _change: &Change,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
    /// `directory.enabled` or `directory.disabled`.
    fn on_directory(
        &mut self,
        _change: &Change,
        _directory: &DirectoryState,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
}

/// Calls the handler's method for the change's kind. A change whose body lacks the part its kind
/// promises (a malformed publish) is ignored.
pub async fn dispatch<H: ChangeHandler>(handler: &mut H, change: &Change) -> Result<(), H::Error> {
    let p = &change.payload;
    let none: &[String] = &[];
    match (change.kind, &p.user, &p.group, &p.directory) {
        (ChangeKind::UserProvisioned, Some(u), _, _) => handler.on_provisioned(change, u).await,
        (ChangeKind::UserReactivated, Some(u), _, _) => handler.on_reactivated(change, u).await,
        (ChangeKind::UserUpdated, Some(u), _, _) => handler.on_updated(change, u).await,
        (ChangeKind::UserDeprovisioned, Some(u), _, _) => handler.on_deprovisioned(change, u).await,
        (ChangeKind::UserErased, Some(u), _, _) => handler.on_erased(change, u).await,
        (ChangeKind::UserRolesChanged, Some(u), _, _) => {
            let granted = p.granted.as_deref().unwrap_or(none);
            let revoked = p.revoked.as_deref().unwrap_or(none);
            handler.on_roles_changed(change, u, granted, revoked).await
        }
        (ChangeKind::UserGroupsChanged, Some(u), _, _) => {
            let joined = p.joined.as_deref().unwrap_or(none);
            let left = p.left.as_deref().unwrap_or(none);
            handler.on_groups_changed(change, u, joined, left).await
        }
        (
            ChangeKind::GroupCreated | ChangeKind::GroupUpdated | ChangeKind::GroupDeleted,
            _,
            Some(g),
            _,
        ) => handler.on_group(change, g).await,
        (ChangeKind::DirectoryEnabled | ChangeKind::DirectoryDisabled, _, _, Some(d)) => {
            handler.on_directory(change, d).await
        }
        (ChangeKind::Other, _, _, _) => handler.on_other(change).await,
        _ => Ok(()),
    }
}
