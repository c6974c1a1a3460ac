//! Directory API JSON (`docs/scalekit.md`, "Directory API"): snake_case proto names; zero values may be omitted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Directory {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub directory_type: Option<String>,
    #[serde(default)]
    pub directory_provider: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub total_users: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ListDirectoriesResponse {
    #[serde(default)]
    pub directories: Vec<Directory>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GetDirectoryResponse {
    pub directory: Directory,
}

/// A group as the API returns it (no member list).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct DirectoryGroup {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub total_users: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub group_detail: Option<Value>,
}

/// A user as the API returns it: no `active` field (listed means active), no `name`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct DirectoryUser {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub groups: Vec<DirectoryGroup>,
    #[serde(default)]
    pub user_detail: Option<Value>,
}

/// One page of a list call.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new", alias = "users", alias = "groups")]
    pub items: Vec<T>,
    #[serde(default)]
    pub next_page_token: Option<String>,
    #[serde(default)]
    pub total_size: Option<i64>,
}

/// gRPC-gateway status body of an error response.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ApiErrorBody {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}
