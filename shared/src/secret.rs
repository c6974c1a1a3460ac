//! Webhook signing secrets (`whsec_<base64>`), decoded strictly at start-up and never printed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;
use std::str::FromStr;

/// Why a configured secret is unusable. Raised at start-up, never per request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("no webhook secret configured")]
    NoSecrets,
    #[error("secret #{0} does not start with `whsec_`")]
    MissingPrefix(usize),
    #[error("secret #{0} is not valid standard base64 after `whsec_`")]
    InvalidBase64(usize),
    #[error("secret #{0} decodes to an empty key")]
    Empty(usize),
}

/// One HMAC key. `Debug` is redacted so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    fn parse_nth(text: &str, index: usize) -> Result<Self, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SecretError::MissingPrefix(index))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::InvalidBase64(index))?;
        if key.is_empty() {
            return Err(SecretError::Empty(index));
        }
        Ok(Self { key })
    }

    /// A secret from raw key bytes (tests, benchmarks).
    pub fn from_key(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    /// The raw HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The `whsec_…` text form.
    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.key))
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_nth(s, 1)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// One or more secrets accepted at once (rotation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

impl WebhookSecrets {
    /// Parses `whsec_…` values separated by spaces and/or commas.
    pub fn parse(list: &str) -> Result<Self, SecretError> {
        let secrets = list
            .split([' ', ',', '\n', '\t'])
            .filter(|s| !s.trim().is_empty())
            .enumerate()
            .map(|(i, s)| WebhookSecret::parse_nth(s, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(secrets)
    }

    /// At least one secret is required.
    pub fn new(secrets: Vec<WebhookSecret>) -> Result<Self, SecretError> {
        if secrets.is_empty() {
            return Err(SecretError::NoSecrets);
        }
        Ok(Self(secrets))
    }

    pub fn iter(&self) -> impl Iterator<Item = &WebhookSecret> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding() {
        assert!(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
                .parse::<WebhookSecret>()
                .is_ok()
        );
        assert_eq!(
            "whsec_test-secret".parse::<WebhookSecret>(),
            Err(SecretError::InvalidBase64(1))
        );
        assert_eq!(
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse::<WebhookSecret>(),
            Err(SecretError::MissingPrefix(1))
        );
        assert_eq!(
            "whsec_".parse::<WebhookSecret>(),
            Err(SecretError::Empty(1))
        );
        assert_eq!(
            "invalid_secret".parse::<WebhookSecret>(),
            Err(SecretError::MissingPrefix(1))
        );
    }

    #[test]
    fn lists_and_redaction() {
        let s =
            WebhookSecrets::parse("whsec_dGVzdHNlY3JldA==, whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
                .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().next().unwrap().key(), b"testsecret");
        assert!(!format!("{s:?}").contains("dGVzd"));
        assert_eq!(WebhookSecrets::parse(" , "), Err(SecretError::NoSecrets));
        assert_eq!(
            WebhookSecrets::parse("whsec_dGVzdHNlY3JldA== whsec_%%"),
            Err(SecretError::InvalidBase64(2))
        );
    }
}
