//! TLS to PostgreSQL, against the machine's cluster (`ssl = on`, its self-signed "snakeoil"
//! certificate for `localhost`): `sslmode=require` encrypts every worker connection (as
//! `pg_stat_ssl` shows), `verify-full` / `verify-ca` check the certificate against
//! `sslrootcert`, and a wrong CA fails with a clear message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use testkit::env::Env;
use testkit::worker::spawn_worker;
use testkit::{fixture, wait_until};

/// The cluster's own certificate: self-signed, so it is its own CA.
const CLUSTER_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn with(url: &str, host: &str, query: &str) -> String {
    let url = url.replacen("127.0.0.1", host, 1);
    format!("{url}?{query}")
}

async fn ssl_of_own_connection(url: &str) -> Result<bool, String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Ssl {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ssl: bool,
    }
    let mut conn = worker::service::db::establish(url)
        .await
        .map_err(|e| shared::Chain(&e).to_string())?;
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .map_err(|e| shared::Chain(&e).to_string())?;
    Ok(row.ssl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_encrypts_every_worker_connection() {
    let env = Env::new().await;
    let url = with(&env.db.url, "127.0.0.1", "sslmode=require");
    let w = spawn_worker(&env.broker.prefix, &url, &[]).await;
    env.broker.publish(&fixture("03_user_created.json")).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            env.db
                .count("SELECT count(*) AS n FROM directory_users")
                .await
                == 1
        })
        .await
    );
    // Every other session on the test's database is the worker's (pool and relay).
    let (encrypted, all) = (
        env.db
            .count(
                "SELECT count(*) AS n FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND s.ssl",
            )
            .await,
        env.db
            .count(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await,
    );
    assert!(
        all >= 2,
        "the worker's pool and relay are connected ({all})"
    );
    assert_eq!(encrypted, all, "every worker connection is encrypted");
    // Without sslmode the connection stays plain, as before.
    assert_eq!(ssl_of_own_connection(&env.db.url).await, Ok(false));
    w.stop().await;
    env.finish().await;
}

#[tokio::test]
async fn verify_full_and_verify_ca_check_the_certificate() {
    let env = Env::new().await;
    let root = format!("sslrootcert={CLUSTER_CERT}");
    // The certificate names `localhost`.
    let full = with(
        &env.db.url,
        "localhost",
        &format!("sslmode=verify-full&{root}"),
    );
    assert_eq!(ssl_of_own_connection(&full).await, Ok(true));
    // The same CA, another name: verify-full refuses, verify-ca (chain only) accepts.
    let by_ip = with(
        &env.db.url,
        "127.0.0.1",
        &format!("sslmode=verify-full&{root}"),
    );
    let refused = ssl_of_own_connection(&by_ip).await.unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
    let ca = with(
        &env.db.url,
        "127.0.0.1",
        &format!("sslmode=verify-ca&{root}"),
    );
    assert_eq!(ssl_of_own_connection(&ca).await, Ok(true));

    // A CA that did not sign the server's certificate.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("scim-tls-{}", env.db.name));
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = dir.join("wrong-ca.pem");
    std::fs::write(&wrong, other.cert.pem()).unwrap();
    let url = with(
        &env.db.url,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", wrong.display()),
    );
    let error = ssl_of_own_connection(&url).await.unwrap_err();
    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "{error}"
    );
    // What `worker migrate` and `worker run` say at start-up.
    let migrate =
        shared::Chain(&worker::service::db::migrate::run(&url).await.unwrap_err()).to_string();
    assert!(
        migrate.contains("cannot connect to the database"),
        "{migrate}"
    );
    assert!(migrate.contains("UnknownIssuer"), "{migrate}");
    let missing = with(
        &env.db.url,
        "localhost",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let error = ssl_of_own_connection(&missing).await.unwrap_err();
    assert!(
        error.contains("sslrootcert `/nonexistent/ca.pem`"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    env.finish().await;
}
