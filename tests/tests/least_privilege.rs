//! One broker user per role, with the rights the deploy gives them (`deploy/k8s/base/
//! rabbitmq-users.yaml`): the pair runs with them (the topology declared by `worker migrate
//! --topology`, ingest only publishing), and the ingest user can neither consume, purge,
//! declare nor delete anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, ExchangeDeclareOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use shared::amqp::lapin;
use std::process::Command;
use testkit::stack::Stack;

/// Users created with `rabbitmqctl` on the machine's broker, deleted when dropped.
struct Users(Vec<String>);

impl Users {
    fn add(&mut self, name: &str, password: &str, [configure, write, read]: [&str; 3]) {
        ctl(&["add_user", name, password]);
        self.0.push(name.to_owned());
        ctl(&["set_permissions", "-p", "/", name, configure, write, read]);
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("rabbitmqctl")
                .args(["-q", "delete_user", name])
                .output();
        }
    }
}

fn ctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (the test needs to create broker users)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The permission regexes of `deploy/k8s/base/rabbitmq-users.yaml`, for `prefix`.
fn ingest_rights(prefix: &str) -> [String; 3] {
    let p = regex_escape(prefix);
    [
        "^$".to_owned(),
        format!("^{p}\\.events(\\.dlx|\\.urgent|\\.bulk)?$"),
        "^$".to_owned(),
    ]
}

fn worker_rights(prefix: &str) -> [String; 3] {
    let all = format!("^{}\\..*", regex_escape(prefix));
    [all.clone(), all.clone(), all]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".^$*+?()[]{}|\\-".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

fn url(user: &str, password: &str) -> String {
    format!("amqp://{user}:{password}@127.0.0.1:5672/%2f")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pair_runs_with_per_role_users_and_ingest_can_only_publish() {
    let mut stack = Stack::new("lp").await.unwrap();
    let password = format!("pw-{}", stack.prefix);
    let (ingest_user, worker_user) = (
        format!("{}-ingest", stack.prefix),
        format!("{}-worker", stack.prefix),
    );
    let mut users = Users(Vec::new());
    let r = ingest_rights(&stack.prefix);
    users.add(&ingest_user, &password, [&r[0], &r[1], &r[2]]);
    let r = worker_rights(&stack.prefix);
    users.add(&worker_user, &password, [&r[0], &r[1], &r[2]]);
    stack.amqp = url(&worker_user, &password);
    stack.ingest_amqp = url(&ingest_user, &password);

    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    stack.deliver_fixtures().await.unwrap();
    // The relay marks a change published once the broker confirmed it, a moment after the
    // events were processed.
    testkit::feed::wait_published(&stack.db, std::time::Duration::from_secs(20))
        .await
        .expect("the worker's user publishes the change feed");
    let changes = stack
        .count("SELECT count(*) AS n FROM changes WHERE published_at IS NOT NULL")
        .await
        .unwrap();
    assert!(changes > 0, "the worker's user publishes the change feed");

    // What the ingest user may not do; each attempt on a channel of its own (a refusal closes
    // the channel).
    let conn = shared::amqp::connect(&stack.ingest_amqp, "lp-probe")
        .await
        .unwrap();
    let apply = stack.topology.apply_queue();
    let dead = stack.topology.dead_queue();
    let mut refused = Vec::new();
    macro_rules! attempt {
        ($what:expr, $op:expr) => {{
            let ch = conn.create_channel().await.unwrap();
            #[allow(clippy::redundant_closure_call)]
            let result = ($op)(ch).await;
            refused.push(($what, result.err().map(|e| e.to_string())));
        }};
    }
    attempt!("consume the apply queue", |ch: lapin::Channel| {
        let q = apply.clone();
        async move {
            ch.basic_consume(
                q.as_str().into(),
                "probe".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(|_| ())
        }
    });
    attempt!("get from the dead-letter queue", |ch: lapin::Channel| {
        let q = dead.clone();
        async move {
            ch.basic_get(q.as_str().into(), BasicGetOptions::default())
                .await
                .map(|_| ())
        }
    });
    attempt!("purge the apply queue", |ch: lapin::Channel| {
        let q = apply.clone();
        async move {
            ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default())
                .await
                .map(|_| ())
        }
    });
    attempt!("delete the apply queue", |ch: lapin::Channel| {
        let q = apply.clone();
        async move {
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await
                .map(|_| ())
        }
    });
    attempt!("declare a queue", |ch: lapin::Channel| {
        let q = format!("{}.events.sneaky", stack.prefix);
        async move {
            ch.queue_declare(
                q.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(|_| ())
        }
    });
    attempt!("declare an exchange", |ch: lapin::Channel| {
        let x = stack.topology.exchange();
        async move {
            ch.exchange_declare(
                x.as_str().into(),
                lapin::ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
        }
    });
    let _ = conn.close(200, "done".into()).await;
    for (what, error) in &refused {
        let error = error
            .as_deref()
            .unwrap_or_else(|| panic!("the ingest user could {what}"));
        assert!(error.contains("ACCESS_REFUSED"), "{what}: {error}");
    }

    // An application's reader user (the deploy's scim-changes-reader): it reads the stream,
    // and cannot bind a queue of its own to the feed's exchange, so no application queue can
    // refuse the relay's publishes and stall the feed for everyone.
    let reader_user = format!("{}-reader", stack.prefix);
    let stream = stack.topology.changes_stream();
    users.add(
        &reader_user,
        &password,
        ["^$", "^$", &format!("^{}$", regex_escape(&stream))],
    );
    let reader = shared::amqp::connect(&url(&reader_user, &password), "lp-reader")
        .await
        .unwrap();
    let ch = reader.create_channel().await.unwrap();
    ch.basic_qos(10, lapin::options::BasicQosOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        lapin::types::AMQPValue::LongString("first".into()),
    );
    let mut feed = ch
        .basic_consume(
            stream.as_str().into(),
            "reader".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .expect("the reader user consumes the stream");
    use futures_util::StreamExt;
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), feed.next())
        .await
        .expect("a change arrives")
        .unwrap()
        .unwrap();
    assert!(!first.data.is_empty());
    let mut refused = Vec::new();
    for what in ["declare a queue", "bind a queue to the feed's exchange"] {
        let ch = reader.create_channel().await.unwrap();
        let result = if what.starts_with("declare") {
            ch.queue_declare(
                format!("{}.changes.mine", stack.prefix).as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(|_| ())
        } else {
            ch.queue_bind(
                apply.as_str().into(),
                stack.topology.changes_exchange().as_str().into(),
                "#".into(),
                lapin::options::QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        };
        refused.push((what, result.err().map(|e| e.to_string())));
    }
    for (what, error) in &refused {
        let error = error
            .as_deref()
            .unwrap_or_else(|| panic!("the reader user could {what}"));
        assert!(error.contains("ACCESS_REFUSED"), "{what}: {error}");
    }
    let _ = reader.close(200, "done".into()).await;
    stack.teardown().await;
    drop(users);
}
