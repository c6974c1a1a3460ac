//! TLS for the tests: a throwaway PKI (a CA, a server certificate for `localhost`, a client
//! certificate, and a CA that signed nothing of these), and a RabbitMQ node of the test's own
//! (`crate::node`) with only a TLS listener.

use crate::node::Node;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};

/// PEM files in one directory.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed none of the certificates above.
    pub wrong_ca: PathBuf,
}

fn ca(name: &str) -> anyhow::Result<(CertificateParams, KeyPair, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key)?.pem();
    Ok((params, key, pem))
}

impl Pki {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (ca_params, ca_key, ca_pem) = ca("scim test CA")?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>| -> anyhow::Result<(String, String)> {
            let key = KeyPair::generate()?;
            let cert = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) = leaf(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let (client_cert, client_key) = leaf(vec!["scim-worker".to_owned()])?;
        let (_, _, wrong_pem) = ca("someone else's CA")?;
        let write = |name: &str, pem: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        Ok(Self {
            ca: write("ca.pem", &ca_pem)?,
            server_cert: write("server.pem", &server_cert)?,
            server_key: write("server.key", &server_key)?,
            client_cert: write("client.pem", &client_cert)?,
            client_key: write("client.key", &client_key)?,
            wrong_ca: write("wrong-ca.pem", &wrong_pem)?,
        })
    }
}

/// A RabbitMQ node with only a TLS listener, using `pki`'s server certificate; it verifies
/// client certificates that are presented, without requiring one.
pub async fn tls_node(dir: &Path, pki: &Pki) -> anyhow::Result<Node> {
    let conf = format!(
        "ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = false\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display(),
    );
    Node::start(dir, &crate::node::cookie(), &conf, true).await
}
