//! The endpoints changes are pushed to: the default one from `CHANGES_WEBHOOK_URL`,
//! `CHANGES_WEBHOOK_SECRET` and `CHANGES_WEBHOOK_KINDS`, more from the TOML file named by
//! `CHANGES_WEBHOOKS_FILE`:
//!
//! ```toml
//! [[endpoint]]
//! name = "billing"                       # [a-z0-9_-], at most 63 characters
//! url = "https://billing.internal/scim"  # http or https
//! secret = "whsec_…"                     # several, comma-separated, while rotating
//! kinds = ["user.deprovisioned"]         # optional: every kind when absent
//! ```
//!
//! Checked whole at start: an error names the endpoint and the field, never a secret or a URL
//! (which may hold credentials).

use shared::WebhookSecrets;
use shared::changes::ChangeKind;
use std::path::Path;

/// The name of the endpoint declared by `CHANGES_WEBHOOK_URL`.
pub const DEFAULT_NAME: &str = "default";

/// One endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub url: reqwest::Url,
    pub secrets: WebhookSecrets,
    /// Empty: every kind.
    pub kinds: Vec<ChangeKind>,
}

impl Endpoint {
    /// Whether a change of this kind goes to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k.as_str() == kind)
    }

    /// The URL without credentials, for logs and `worker endpoints list`.
    pub fn shown_url(&self) -> String {
        shared::redact_url(self.url.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointsError {
    #[error("CHANGES_WEBHOOK_SECRET is required with CHANGES_WEBHOOK_URL")]
    MissingSecret,
    #[error("CHANGES_WEBHOOK_SECRET and CHANGES_WEBHOOK_KINDS need CHANGES_WEBHOOK_URL")]
    MissingUrl,
    #[error("CHANGES_WEBHOOKS_FILE: cannot read it: {0}")]
    Read(String),
    #[error("CHANGES_WEBHOOKS_FILE: not a TOML list of [[endpoint]] tables: {0}")]
    Parse(String),
    #[error("CHANGES_WEBHOOKS_FILE: endpoint #{index}: {field}: {why}")]
    Field {
        index: usize,
        field: &'static str,
        why: String,
    },
    #[error("endpoint name {0:?} is used twice (\"default\" is CHANGES_WEBHOOK_URL's)")]
    Duplicate(String),
}

/// The URL of an endpoint: absolute, http or https. The error never repeats the value.
pub fn parse_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".to_owned());
    }
    Ok(url)
}

/// A list of `whsec_…` secrets; the error says which one is wrong, never its value.
pub fn parse_secrets(text: &str) -> Result<WebhookSecrets, String> {
    WebhookSecrets::parse(text).map_err(|e| e.to_string())
}

/// A change kind by its wire name.
pub fn parse_kind(text: &str) -> Result<ChangeKind, String> {
    ChangeKind::parse(text.trim()).ok_or_else(|| {
        let known: Vec<&str> = ChangeKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind (known: {})", known.join(", "))
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("1 to 63 characters of a-z, 0-9, '-' and '_'".to_owned())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    endpoint: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    url: String,
    secret: String,
    #[serde(default)]
    kinds: Vec<String>,
}

/// The endpoints of a `CHANGES_WEBHOOKS_FILE` text.
pub fn parse_file(text: &str) -> Result<Vec<Endpoint>, EndpointsError> {
    let file: File = toml::from_str(text).map_err(|e| {
        // The parser's message quotes the offending line, which may be a secret: only its
        // position and kind of error are kept.
        let what = e.message().lines().next().unwrap_or("invalid").to_owned();
        let at = e
            .span()
            .map(|s| format!(" at byte {}", s.start))
            .unwrap_or_default();
        EndpointsError::Parse(format!("{}{at}", shared::redact::escape_controls(&what)))
    })?;
    file.endpoint
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let index = i + 1;
            let field = |field: &'static str| {
                move |why: String| EndpointsError::Field { index, field, why }
            };
            check_name(&e.name).map_err(field("name"))?;
            Ok(Endpoint {
                url: parse_url(&e.url).map_err(field("url"))?,
                secrets: parse_secrets(&e.secret).map_err(field("secret"))?,
                kinds: e
                    .kinds
                    .iter()
                    .map(|k| parse_kind(k))
                    .collect::<Result<_, _>>()
                    .map_err(field("kinds"))?,
                name: e.name,
            })
        })
        .collect()
}

/// Every configured endpoint: the default one, then the file's; names unique.
pub fn collect(
    url: Option<&reqwest::Url>,
    secrets: Option<&WebhookSecrets>,
    kinds: &[ChangeKind],
    file: Option<&Path>,
) -> Result<Vec<Endpoint>, EndpointsError> {
    let mut all = Vec::new();
    match (url, secrets) {
        (Some(url), Some(secrets)) => all.push(Endpoint {
            name: DEFAULT_NAME.to_owned(),
            url: url.clone(),
            secrets: secrets.clone(),
            kinds: kinds.to_vec(),
        }),
        (Some(_), None) => return Err(EndpointsError::MissingSecret),
        (None, Some(_)) => return Err(EndpointsError::MissingUrl),
        (None, None) if !kinds.is_empty() => return Err(EndpointsError::MissingUrl),
        (None, None) => {}
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EndpointsError::Read(format!("{}: {e}", path.display())))?;
        all.extend(parse_file(&text)?);
    }
    let mut names = std::collections::HashSet::new();
    for e in &all {
        if !names.insert(e.name.clone()) {
            return Err(EndpointsError::Duplicate(e.name.clone()));
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_file_declares_named_endpoints_with_kinds_and_rotating_secrets() {
        let text = format!(
            "[[endpoint]]\nname = \"billing\"\nurl = \"https://billing.internal/scim\"\nsecret = \"{SECRET}, {SECRET}\"\nkinds = [\"user.deprovisioned\"]\n\n[[endpoint]]\nname = \"audit-2\"\nurl = \"http://audit:8080/in\"\nsecret = \"{SECRET}\"\n"
        );
        let all = parse_file(&text).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, "billing");
        assert_eq!(all[0].secrets.len(), 2);
        assert!(all[0].wants("user.deprovisioned"));
        assert!(!all[0].wants("user.updated"));
        assert!(all[1].wants("user.updated"));
        assert!(all[1].wants("directory.enabled"));
    }

    #[test]
    fn file_errors_name_the_endpoint_and_field_but_never_the_secret() {
        let bad_secret = "whsec_not*base64";
        for (text, field) in [
            (
                format!(
                    "[[endpoint]]\nname = \"Bad Name\"\nurl = \"https://x\"\nsecret = \"{SECRET}\""
                ),
                "name",
            ),
            (
                format!("[[endpoint]]\nname = \"a\"\nurl = \"ftp://x\"\nsecret = \"{SECRET}\""),
                "url",
            ),
            (
                format!(
                    "[[endpoint]]\nname = \"a\"\nurl = \"https://x\"\nsecret = \"{bad_secret}\""
                ),
                "secret",
            ),
            (
                format!(
                    "[[endpoint]]\nname = \"a\"\nurl = \"https://x\"\nsecret = \"{SECRET}\"\nkinds = [\"user.nope\"]"
                ),
                "kinds",
            ),
        ] {
            let err = parse_file(&text).unwrap_err();
            assert!(
                matches!(err, EndpointsError::Field { index: 1, field: f, .. } if f == field),
                "{err}"
            );
            assert!(!err.to_string().contains("not*base64"), "{err}");
        }
        // A syntax error on the secret's line does not quote it.
        let err = parse_file("[[endpoint]]\nsecret = whsec_unquoted_secret\n").unwrap_err();
        assert!(!err.to_string().contains("unquoted_secret"), "{err}");
    }

    #[test]
    fn the_default_endpoint_needs_both_url_and_secret_and_names_are_unique() {
        let url = parse_url("https://app.example.com/hooks?token=abc").unwrap();
        let secrets = parse_secrets(SECRET).unwrap();
        assert_eq!(
            collect(Some(&url), None, &[], None).unwrap_err(),
            EndpointsError::MissingSecret
        );
        assert_eq!(
            collect(None, Some(&secrets), &[], None).unwrap_err(),
            EndpointsError::MissingUrl
        );
        assert_eq!(
            collect(None, None, &[ChangeKind::UserErased], None).unwrap_err(),
            EndpointsError::MissingUrl
        );
        assert!(collect(None, None, &[], None).unwrap().is_empty());
        let one = collect(Some(&url), Some(&secrets), &[], None).unwrap();
        assert_eq!(one[0].name, DEFAULT_NAME);

        let dir = std::env::temp_dir().join(format!("endpoints-{}", std::process::id()));
        std::fs::write(
            &dir,
            format!("[[endpoint]]\nname = \"default\"\nurl = \"https://x\"\nsecret = \"{SECRET}\""),
        )
        .unwrap();
        let dup = collect(Some(&url), Some(&secrets), &[], Some(&dir)).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(dup, EndpointsError::Duplicate("default".into()));
    }

    #[test]
    fn urls_are_http_or_https_and_shown_without_credentials() {
        assert!(parse_url("mailto:a@b").is_err());
        assert!(parse_url("/relative").is_err());
        let e = Endpoint {
            name: "x".into(),
            url: parse_url("https://user:pa55@app.example.com/in").unwrap(),
            secrets: parse_secrets(SECRET).unwrap(),
            kinds: vec![],
        };
        assert!(!e.shown_url().contains("pa55"), "{}", e.shown_url());
    }
}
