//! `Authorization: Bearer <token>` against `CHANGES_API_TOKENS`: each token compared in
//! constant time (a timing difference would tell an attacker how much of a guess was right).

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The accepted tokens (several, for rotation).
#[derive(Clone)]
pub struct Tokens(Vec<SecretString>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} redacted)", self.0.len())
    }
}

/// Shortest token accepted: a bearer token is the only thing between the network and every
/// user's profile.
pub const MIN_TOKEN_CHARS: usize = 32;

impl Tokens {
    /// Comma-separated tokens, each at least [`MIN_TOKEN_CHARS`] long. The error never quotes
    /// a token.
    pub fn parse(list: &str) -> Result<Self, String> {
        let tokens: Vec<SecretString> = list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_owned()))
            .collect();
        if tokens.is_empty() {
            return Err("names no token".to_owned());
        }
        for (i, t) in tokens.iter().enumerate() {
            let t = t.expose_secret();
            if t.chars().count() < MIN_TOKEN_CHARS {
                return Err(format!(
                    "token #{} is shorter than {MIN_TOKEN_CHARS} characters",
                    i + 1
                ));
            }
            if !t.chars().all(|c| c.is_ascii_graphic()) {
                return Err(format!(
                    "token #{} holds spaces or non-ASCII characters",
                    i + 1
                ));
            }
        }
        Ok(Self(tokens))
    }

    /// Whether the `Authorization` header's value carries one of the tokens.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|h| {
            h.strip_prefix(b"Bearer ")
                .or_else(|| h.strip_prefix(b"bearer "))
        }) else {
            return false;
        };
        // Every token is compared, so the time does not tell which one matched.
        self.0.iter().fold(false, |found, t| {
            found | bool::from(t.expose_secret().as_bytes().ct_eq(given))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "tok_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "tok_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn any_configured_token_is_accepted_and_nothing_else() {
        let tokens = Tokens::parse(&format!("{A}, {B}")).unwrap();
        assert!(tokens.allows(Some(format!("Bearer {A}").as_bytes())));
        assert!(tokens.allows(Some(format!("Bearer {B}").as_bytes())));
        assert!(!tokens.allows(None));
        assert!(!tokens.allows(Some(A.as_bytes())), "no scheme");
        assert!(!tokens.allows(Some(format!("Basic {A}").as_bytes())));
        assert!(!tokens.allows(Some(format!("Bearer {A}x").as_bytes())));
        assert!(!tokens.allows(Some(format!("Bearer {}", &A[..20]).as_bytes())));
        assert!(!tokens.allows(Some(b"Bearer ")));
    }

    #[test]
    fn weak_lists_are_refused_without_quoting_a_token() {
        assert!(Tokens::parse(" , ").is_err());
        let e = Tokens::parse(&format!("{A},short-secret")).unwrap_err();
        assert_eq!(e, "token #2 is shorter than 32 characters");
        assert!(
            Tokens::parse(&format!("{A} {B}")).is_err(),
            "a space inside"
        );
        assert!(!format!("{:?}", Tokens::parse(A).unwrap()).contains(A));
    }
}
