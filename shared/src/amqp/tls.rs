//! TLS to RabbitMQ (`amqps://`, through rustls): the broker's certificate is checked against
//! the public roots plus the CA in `AMQP_CA_FILE` (a cluster's own CA), and the connection
//! presents a client certificate when `AMQP_CLIENT_CERT_FILE` and `AMQP_CLIENT_KEY_FILE` are
//! set. The binaries read the three paths on their command line (options of their own, each
//! also its variable) and hand them over once with [`use_files`]; a library user that does not
//! (an application linking `change-feed`) gets them from the environment. The files are read
//! on every connect, so renewed ones are picked up on the next reconnect. Plain `amqp://` URLs
//! ignore them.

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

/// The TLS files of this process's broker connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

impl TlsFiles {
    /// The environment's (for a library user whose command line does not read them).
    pub fn from_env() -> Self {
        Self {
            ca_file: var(CA_FILE),
            client_cert_file: var(CLIENT_CERT_FILE),
            client_key_file: var(CLIENT_KEY_FILE),
        }
    }
}

/// The three files as a command line reads them: `--amqp-ca-file` (`AMQP_CA_FILE`),
/// `--amqp-client-cert-file` (`AMQP_CLIENT_CERT_FILE`), `--amqp-client-key-file`
/// (`AMQP_CLIENT_KEY_FILE`), for every subcommand.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) the broker's certificate is checked against, besides the public
    /// roots (`amqps://` only).
    #[arg(long, global = true, env = "AMQP_CA_FILE")]
    pub amqp_ca_file: Option<String>,
    /// Client certificate (PEM) to present to the broker; with `AMQP_CLIENT_KEY_FILE`.
    #[arg(long, global = true, env = "AMQP_CLIENT_CERT_FILE")]
    pub amqp_client_cert_file: Option<String>,
    /// The client certificate's private key (PEM, PKCS #8).
    #[arg(long, global = true, env = "AMQP_CLIENT_KEY_FILE")]
    pub amqp_client_key_file: Option<String>,
}

#[cfg(feature = "cli")]
impl TlsArgs {
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.amqp_ca_file.clone(),
            client_cert_file: self.amqp_client_cert_file.clone(),
            client_key_file: self.amqp_client_key_file.clone(),
        }
    }
}

/// Set by [`use_files`]; `None` until then.
static IN_USE: std::sync::RwLock<Option<TlsFiles>> = std::sync::RwLock::new(None);

/// Uses `files` for every later connection of this process, once they are read and found to
/// be PEM (a start-up error otherwise, not a reconnect loop).
pub fn use_files(files: TlsFiles) -> Result<(), TlsFilesError> {
    config_of(&files)?;
    if let Ok(mut in_use) = IN_USE.write() {
        *in_use = Some(files);
    }
    Ok(())
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

/// The TLS settings of a connection: the files set by [`use_files`], else the environment's
/// (empty when none is set).
pub fn config() -> Result<OwnedTLSConfig, TlsFilesError> {
    let files = IN_USE
        .read()
        .ok()
        .and_then(|f| f.clone())
        .unwrap_or_else(TlsFiles::from_env);
    config_of(&files)
}

fn config_of(files: &TlsFiles) -> Result<OwnedTLSConfig, TlsFilesError> {
    let given = |v: &Option<String>| v.clone().filter(|p| !p.trim().is_empty());
    let cert_chain = match given(&files.ca_file) {
        Some(path) => {
            let pem = read(CA_FILE, &path, "-----BEGIN CERTIFICATE-----", "certificate")?;
            Some(String::from_utf8_lossy(&pem).into_owned())
        }
        None => None,
    };
    let identity = match (
        given(&files.client_cert_file),
        given(&files.client_key_file),
    ) {
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
