//! The application that changes are pushed to misbehaves while a stream flows: it answers 503
//! for a while (its database unreachable), it is down for a while (killed, then started
//! again), and it answers later than `CHANGES_WEBHOOK_TIMEOUT` for a while (its tables
//! locked). Nothing is skipped: it converges to the directory with each organization's changes
//! received in `seq` order (a batch may come twice; the application skips what it has), as do
//! the two other example applications.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::time::Duration;
use testkit::TcpProxy;
use testkit::stack::Stack;
use tests::corpus::generate;
use tests::scenario::{finish, send, wait_progress};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_fails_goes_down_and_answers_late_and_still_converges() {
    let corpus = generate(11, 10, 30, 2500);
    let mut stack = Stack::new("pushf").await.unwrap();
    stack
        .start_worker_with(&[("CHANGES_WEBHOOK_TIMEOUT", "1s")])
        .await
        .unwrap();
    stack.start_ingest().await.unwrap();
    let app_db = TcpProxy::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    let mut node = tests::app::start_node(&stack, Some(app_db.port()))
        .await
        .unwrap();
    let mut apps = vec![
        tests::app::start(&stack.amqp, &stack.prefix).await.unwrap(),
        tests::app::start_python(&stack).await.unwrap(),
    ];
    let sender = send(&stack, &corpus, 11);

    // 503s: the application cannot reach its database.
    wait_progress(&stack, 300).await.unwrap();
    app_db.cut().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    app_db.restore().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        node.running(),
        "the application survived losing its database"
    );

    // Down: killed, started again 4 s later.
    wait_progress(&stack, 900).await.unwrap();
    node.kill().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    node.restart().await.unwrap();

    // Late: its tables locked for 3 s, three times the worker's timeout.
    wait_progress(&stack, 1500).await.unwrap();
    let mut lock = AsyncPgConnection::establish(&node.db.url).await.unwrap();
    lock.batch_execute(
        "BEGIN; LOCK TABLE app_org_position IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT",
    )
    .await
    .unwrap();

    apps.push(node);
    finish(stack, &corpus, sender, apps).await.unwrap();
    let _ = app_db;
}
