//! Identifier newtypes, so an organization id can never be passed where a user id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id as received (no prefix check: Scalekit may change formats).
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// Envelope `id` (`evt_…`): the dedupe key.
    EventId
);
id_type!(
    /// `org_…`
    OrganizationId
);
id_type!(
    /// `diruser_…`
    DirectoryUserId
);
id_type!(
    /// `dirgroup_…`
    DirectoryGroupId
);
id_type!(
    /// `dir_…`
    DirectoryId
);
id_type!(
    /// `env_…`
    EnvironmentId
);
