//! Standard Webhooks verification (`docs/scalekit.md`, "Webhook signatures"): HMAC-SHA256 over `{id}.{timestamp}.{raw body}`,
//! several secrets and several `v1,` signatures, ±tolerance both ways, constant-time comparison.

use crate::secret::{WebhookSecret, WebhookSecrets};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Spec §1.3: 300 s in both directions.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// Why a request is rejected. `code()` is the stable reason code used in responses and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or empty header `{0}`")]
    MissingHeader(&'static str),
    #[error("`webhook-timestamp` is not an integer number of seconds")]
    InvalidTimestamp,
    #[error("message timestamp too old")]
    TimestampTooOld,
    #[error("message timestamp too new")]
    TimestampTooNew,
    #[error("no matching signature")]
    InvalidSignature,
    #[error("header `{0}` is repeated, too long or not visible ASCII")]
    InvalidHeader(&'static str),
}

impl VerifyError {
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::InvalidTimestamp => "invalid_timestamp",
            VerifyError::TimestampTooOld => "timestamp_too_old",
            VerifyError::TimestampTooNew => "timestamp_too_new",
            VerifyError::InvalidSignature => "invalid_signature",
            VerifyError::InvalidHeader(_) => "invalid_header",
        }
    }
}

/// Anything that can look a header up case-insensitively.
pub trait HeaderSource {
    /// The header's value, if present and valid text.
    fn header(&self, name: &str) -> Option<&str>;

    /// Whether the header is there at all, text or not (an HTTP header may carry bytes that
    /// are not visible ASCII; `header` then says `None`).
    fn present(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Whether the header appears more than once.
    fn repeated(&self, _name: &str) -> bool {
        false
    }
}

impl HeaderSource for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl<const N: usize> HeaderSource for [(&str, &str); N] {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

/// A webhook whose signature and timestamp were checked. Only [`Verifier::verify`] makes one,
/// so nothing unverified can be published.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook {
    webhook_id: String,
    timestamp: i64,
    body: Bytes,
}

impl VerifiedWebhook {
    pub fn webhook_id(&self) -> &str {
        &self.webhook_id
    }
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    /// The raw body bytes exactly as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// Verifies webhooks against every configured secret.
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: WebhookSecrets,
    tolerance_seconds: u64,
}

impl Verifier {
    pub fn new(secrets: WebhookSecrets) -> Self {
        Self {
            secrets,
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        }
    }

    pub fn with_tolerance(mut self, seconds: u64) -> Self {
        self.tolerance_seconds = seconds;
        self
    }

    /// Verifies with an injected "now" (Unix seconds).
    pub fn verify<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: Bytes,
        now: i64,
    ) -> Result<VerifiedWebhook, VerifyError> {
        self.verify_body(self.check_headers(headers, now)?, body)
    }

    /// The checks that need no body and no HMAC, made before the body is read: the three
    /// headers present once each, the id at most [`MAX_ID_BYTES`], the timestamp within the
    /// window, and a well-formed `v1` signature among the first [`MAX_SIGNATURE_ENTRIES`]
    /// entries.
    pub fn check_headers<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        now: i64,
    ) -> Result<SignedHeaders, VerifyError> {
        let id = required(headers, HEADER_ID)?;
        let ts_text = required(headers, HEADER_TIMESTAMP)?;
        let signatures = required(headers, HEADER_SIGNATURE)?;
        if id.len() > MAX_ID_BYTES {
            return Err(VerifyError::InvalidHeader(HEADER_ID));
        }
        let timestamp = parse_timestamp(ts_text)?;
        let tolerance = i64::try_from(self.tolerance_seconds).unwrap_or(i64::MAX);
        if now.saturating_sub(timestamp) > tolerance {
            return Err(VerifyError::TimestampTooOld);
        }
        if timestamp.saturating_sub(now) > tolerance {
            return Err(VerifyError::TimestampTooNew);
        }
        let candidates: Vec<[u8; 32]> = candidate_signatures(signatures).collect();
        if candidates.is_empty() {
            return Err(VerifyError::InvalidSignature);
        }
        Ok(SignedHeaders {
            id: id.to_owned(),
            timestamp,
            candidates,
        })
    }

    /// The HMAC over the body, against the signatures the headers carried.
    pub fn verify_body(
        &self,
        headers: SignedHeaders,
        body: Bytes,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let matched = self.secrets.iter().any(|secret| {
            let expected = mac(secret, &headers.id, headers.timestamp, &body);
            headers
                .candidates
                .iter()
                .any(|sig| bool::from(expected.as_slice().ct_eq(sig)))
        });
        if !matched {
            return Err(VerifyError::InvalidSignature);
        }
        Ok(VerifiedWebhook {
            webhook_id: headers.id,
            timestamp: headers.timestamp,
            body,
        })
    }
}

/// Headers that passed [`Verifier::check_headers`]: what the body's HMAC is checked against.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    id: String,
    timestamp: i64,
    candidates: Vec<[u8; 32]>,
}

impl SignedHeaders {
    pub fn webhook_id(&self) -> &str {
        &self.id
    }
}

/// The longest `webhook-id` taken (Svix ids are ~30 bytes).
pub const MAX_ID_BYTES: usize = 256;
/// Signature entries looked at: a sender lists one per active secret, so a few; a header with
/// thousands costs no more than this many decodes.
pub const MAX_SIGNATURE_ENTRIES: usize = 16;

fn required<'h, H: HeaderSource + ?Sized>(
    headers: &'h H,
    name: &'static str,
) -> Result<&'h str, VerifyError> {
    if headers.repeated(name) {
        return Err(VerifyError::InvalidHeader(name));
    }
    match headers.header(name) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim()),
        None if headers.present(name) => Err(VerifyError::InvalidHeader(name)),
        _ => Err(VerifyError::MissingHeader(name)),
    }
}

/// Strict: ASCII digits only (no sign, no fraction, no junk), fits in i64.
fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::InvalidTimestamp);
    }
    text.parse().map_err(|_| VerifyError::InvalidTimestamp)
}

/// Decoded 32-byte `v1` signatures; `v1a`, entries without a comma and bad base64 are skipped.
fn candidate_signatures(header: &str) -> impl Iterator<Item = [u8; 32]> + '_ {
    header
        .split(' ')
        .take(MAX_SIGNATURE_ENTRIES)
        .filter_map(|entry| {
            let (version, sig) = entry.split_once(',')?;
            // 32 bytes are 44 base64 characters: anything longer is not decoded at all.
            if version != "v1" || sig.len() != 44 {
                return None;
            }
            STANDARD.decode(sig).ok()?.try_into().ok()
        })
}

fn mac(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an impossible tag anyway.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret.key()) else {
        return [0; 32];
    };
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// The `v1,<base64>` signature Scalekit would send (tests, benchmarks, the local sample sender).
pub fn sign(secret: &WebhookSecret, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(mac(secret, webhook_id, timestamp, body))
    )
}
