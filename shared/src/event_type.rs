//! The directory event types Scalekit sends (`docs/scalekit.md`, "Events"), as a closed enum plus their wire names.

use std::fmt;

/// A known directory event type. Unknown types are kept as strings by [`crate::Event::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    DirectoryEnabled,
    DirectoryDisabled,
    UserCreated,
    UserUpdated,
    UserDeleted,
    GroupCreated,
    GroupUpdated,
    GroupDeleted,
}

impl EventType {
    /// Every known type, in spec order.
    pub const ALL: [EventType; 8] = [
        EventType::DirectoryEnabled,
        EventType::DirectoryDisabled,
        EventType::UserCreated,
        EventType::UserUpdated,
        EventType::UserDeleted,
        EventType::GroupCreated,
        EventType::GroupUpdated,
        EventType::GroupDeleted,
    ];

    /// The wire name, also the AMQP routing key.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::DirectoryEnabled => "organization.directory_enabled",
            EventType::DirectoryDisabled => "organization.directory_disabled",
            EventType::UserCreated => "organization.directory.user_created",
            EventType::UserUpdated => "organization.directory.user_updated",
            EventType::UserDeleted => "organization.directory.user_deleted",
            EventType::GroupCreated => "organization.directory.group_created",
            EventType::GroupUpdated => "organization.directory.group_updated",
            EventType::GroupDeleted => "organization.directory.group_deleted",
        }
    }

    /// Looks a wire name up; `None` for a type this build does not know.
    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_wire(t.as_str()), Some(t));
        }
        assert_eq!(EventType::from_wire("scalekit.dir.user.create"), None);
    }
}
