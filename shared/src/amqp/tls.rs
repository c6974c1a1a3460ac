//! TLS to RabbitMQ (`amqps://`, through rustls): the broker's certificate is checked against
//! the public roots plus the CA in `AMQP_CA_FILE` (a cluster's own CA), and the connection
//! presents a client certificate when `AMQP_CLIENT_CERT_FILE` and `AMQP_CLIENT_KEY_FILE` are
//! set. Read from the environment on every connect, so every command that talks to the broker
//! (ingest, `worker run`, `dlq`, `changes tail`, `migrate --topology`) takes the same settings,
//! and renewed files are picked up on the next reconnect. Plain `amqp://` URLs ignore them.

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

pub const CA_FILE: &str = "AMQP_CA_FILE";
pub const CLIENT_CERT_FILE: &str = "AMQP_CLIENT_CERT_FILE";
pub const CLIENT_KEY_FILE: &str = "AMQP_CLIENT_KEY_FILE";

#[derive(Debug, thiserror::Error)]
pub enum TlsFilesError {
    #[error("{var} `{path}`")]
    Read {
        var: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{var} `{path}` holds no PEM {what}")]
    NotPem {
        var: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("{CLIENT_CERT_FILE} and {CLIENT_KEY_FILE} go together")]
    HalfClientCert,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn read(
    var: &'static str,
    path: &str,
    marker: &str,
    what: &'static str,
) -> Result<Vec<u8>, TlsFilesError> {
    let bytes = std::fs::read(path).map_err(|source| TlsFilesError::Read {
        var,
        path: path.to_owned(),
        source,
    })?;
    if !String::from_utf8_lossy(&bytes).contains(marker) {
        return Err(TlsFilesError::NotPem {
            var,
            path: path.to_owned(),
            what,
        });
    }
    Ok(bytes)
}

/// The TLS settings from the environment (empty when none is set).
pub fn from_env() -> Result<OwnedTLSConfig, TlsFilesError> {
    let cert_chain = match var(CA_FILE) {
        Some(path) => {
            let pem = read(CA_FILE, &path, "-----BEGIN CERTIFICATE-----", "certificate")?;
            Some(String::from_utf8_lossy(&pem).into_owned())
        }
        None => None,
    };
    let identity = match (var(CLIENT_CERT_FILE), var(CLIENT_KEY_FILE)) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read(
                CLIENT_CERT_FILE,
                &cert,
                "-----BEGIN CERTIFICATE-----",
                "certificate",
            )?,
            key: read(CLIENT_KEY_FILE, &key, "PRIVATE KEY-----", "private key")?,
        }),
        (None, None) => None,
        _ => return Err(TlsFilesError::HalfClientCert),
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}
