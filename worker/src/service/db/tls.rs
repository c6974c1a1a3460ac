//! TLS to PostgreSQL, through rustls, with libpq's URL parameters: `sslmode` (`disable`,
//! `prefer`, `require`, `verify-ca`, `verify-full`), `sslrootcert` (the CA file), and
//! `sslcert` + `sslkey` (a client certificate). tokio-postgres itself knows only
//! disable / prefer / require, so these are taken off the URL here and turned into a rustls
//! configuration. Without `sslmode` the connection is plain, as it always was here (libpq would
//! try TLS first).

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS parameters of a `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    #[error("sslmode `{0}` is not one of disable, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error("sslmode={0} needs sslrootcert: the CA certificate that signed the server's")]
    NoRootCert(&'static str),
    #[error("sslcert and sslkey go together")]
    HalfClientCert,
    #[error("{what} `{path}`: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS set-up")]
    Rustls(#[from] rustls::Error),
}

/// Takes libpq's TLS parameters off `url`: the URL tokio-postgres is given (its `sslmode` one it
/// knows: `disable`, or `require` whenever TLS is asked for) and what to build rustls from.
pub fn split(url: &str) -> Result<(String, PgTls), PgTlsError> {
    let mut tls = PgTls {
        mode: SslMode::Disable,
        root_cert: None,
        client_cert: None,
        client_key: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), tls));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "sslmode" => {
                tls.mode = match value.as_str() {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => return Err(PgTlsError::Mode(other.to_owned())),
                };
            }
            "sslrootcert" => tls.root_cert = Some(value),
            "sslcert" => tls.client_cert = Some(value),
            "sslkey" => tls.client_key = Some(value),
            _ => kept.push(pair.to_owned()),
        }
    }
    kept.push(
        match tls.mode {
            SslMode::Disable => "sslmode=disable",
            SslMode::Prefer => "sslmode=prefer",
            _ => "sslmode=require",
        }
        .to_owned(),
    );
    Ok((format!("{base}?{}", kept.join("&")), tls))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn file_error(what: &'static str, path: &str, reason: impl std::fmt::Display) -> PgTlsError {
    PgTlsError::File {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(
    what: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, PgTlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The rustls client configuration for `tls` (`None` for `sslmode=disable`).
pub fn client_config(tls: &PgTls) -> Result<Option<rustls::ClientConfig>, PgTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &tls.root_cert {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("sslrootcert", path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error("sslrootcert", path, e))?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, roots) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::VerifyFull, None) => return Err(PgTlsError::NoRootCert("verify-full")),
        (SslMode::VerifyCa, None) => return Err(PgTlsError::NoRootCert("verify-ca")),
        (SslMode::VerifyFull, Some(roots)) => {
            WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?
        }
        // libpq: with a root certificate, `require` verifies the chain as `verify-ca` does.
        (_, Some(roots)) => Arc::new(ChainOnly(
            WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?,
        )),
        // `prefer` / `require` without a root certificate: encrypted, the server unverified.
        (_, None) => Arc::new(EncryptOnly(Arc::clone(&provider))),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("sslkey", key, e))?;
            builder.with_client_auth_cert(certificates("sslcert", cert)?, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(PgTlsError::HalfClientCert),
    };
    Ok(Some(config))
}

/// `verify-ca`: the chain must lead to the root certificate; the name in it is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a root certificate (libpq's meaning): the traffic is
/// encrypted, but whoever answers is not verified. The handshake's signatures still are.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_come_off_the_url() {
        let (url, tls) = split(
            "postgres://u:p@db:5432/scim?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=w",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db:5432/scim?application_name=w&sslmode=require"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (url, tls) = split("postgres://u@db/scim").unwrap();
        assert_eq!(
            (url.as_str(), tls.mode),
            ("postgres://u@db/scim", SslMode::Disable)
        );
        let (url, _) = split("postgres://u@db/scim?sslmode=prefer").unwrap();
        assert!(url.ends_with("?sslmode=prefer"));
        assert!(matches!(
            split("postgres://u@db/scim?sslmode=sometimes"),
            Err(PgTlsError::Mode(_))
        ));
    }

    #[test]
    fn verifying_modes_need_a_root_certificate_and_files_must_hold_pem() {
        let tls = |mode, root: Option<&str>| PgTls {
            mode,
            root_cert: root.map(str::to_owned),
            client_cert: None,
            client_key: None,
        };
        assert!(matches!(
            client_config(&tls(SslMode::VerifyFull, None)),
            Err(PgTlsError::NoRootCert("verify-full"))
        ));
        assert!(matches!(
            client_config(&tls(SslMode::VerifyCa, None)),
            Err(PgTlsError::NoRootCert("verify-ca"))
        ));
        assert!(
            client_config(&tls(SslMode::Disable, None))
                .unwrap()
                .is_none()
        );
        assert!(
            client_config(&tls(SslMode::Require, None))
                .unwrap()
                .is_some()
        );
        let missing = client_config(&tls(SslMode::VerifyFull, Some("/nonexistent/ca.pem")));
        assert!(
            matches!(
                &missing,
                Err(PgTlsError::File {
                    what: "sslrootcert",
                    ..
                })
            ),
            "{missing:?}"
        );
        let half = PgTls {
            client_cert: Some("/x.pem".to_owned()),
            ..tls(SslMode::Require, None)
        };
        assert!(matches!(
            client_config(&half),
            Err(PgTlsError::HalfClientCert)
        ));
    }
}
