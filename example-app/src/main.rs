use anyhow::Context;
use change_feed::FeedConfig;
use example_app::ExampleApp;
use tokio_util::sync::CancellationToken;

/// `AMQP_URL`, `AMQP_PREFIX` (the worker's) and `APP_DATABASE_URL` (the application's own).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let env =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let amqp = env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let prefix = env("AMQP_PREFIX", "scim");
    let database = env(
        "APP_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/example_app",
    );
    let mut app = ExampleApp::connect(&database)
        .await
        .context("connecting to the application's database")?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    change_feed::run(
        &FeedConfig::new(amqp, &prefix, "example-app"),
        &mut app,
        &stop,
    )
    .await
    .context("following the change feed")?;
    Ok(())
}
