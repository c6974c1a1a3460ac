//! The pull API against a real worker: bearer tokens, paging in `seq` order through every
//! change the outbox holds, filters, each bad parameter named, a long-poll woken by a commit,
//! and a cursor below what retention kept answered 410.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use shared::changes::{Change, ChangeKind};
use std::time::{Duration, Instant};
use testkit::env::Env;
use testkit::wait_until;
use testkit::worker::*;

const TOKEN: &str = "tok_test_0123456789abcdefghijklmnopqrstuv";
const ROTATED: &str = "tok_next_0123456789abcdefghijklmnopqrstuv";

fn user(i: usize, org: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "spec_version": "1", "id": format!("evt_api_{org}_{i}"),
        "type": "organization.directory.user_created", "object": "DirectoryUser",
        "environment_id": "env_1", "organization_id": org, "occurred_at": "2026-01-01T00:00:00Z",
        "data": {"id": format!("diruser_{i}"), "organization_id": org, "active": true,
                 "email": format!("u{i}@example.com"), "dp_id": format!("00u{i}"),
                 "groups": [{"id": "dirgroup_1", "name": "Eng"}]}
    }))
    .unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn get(&self, query: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}/v1/changes?{query}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_pull_every_change_in_order() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let tokens = format!("{TOKEN},{ROTATED}");
    let w = spawn_worker(
        &broker.prefix,
        &db.url,
        &[
            "--changes-api-listen",
            "127.0.0.1:0",
            "--changes-api-tokens",
            &tokens,
        ],
    )
    .await;
    let api = Client {
        http: reqwest::Client::new(),
        base: w.api.clone().expect("the pull API listens"),
    };
    for i in 0..12 {
        broker
            .publish(&user(i, if i % 2 == 0 { "org_a" } else { "org_b" }))
            .await;
    }
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == 12
        })
        .await
    );
    let written = db.count("SELECT count(*) AS n FROM changes").await;
    assert_eq!(
        written, 24,
        "provisioned and groups_changed for each of 12 users"
    );

    // Tokens.
    let (status, body) = api.get("after=0", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = api
        .get("after=0", Some("tok_wrong_0123456789abcdefghijklmnopqrst"))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        api.get("after=0&limit=1", Some(ROTATED)).await.0,
        200,
        "either token"
    );

    // Paging through everything, in order, each item a change of the contract.
    let mut after = 0;
    let mut seen: Vec<Change> = Vec::new();
    loop {
        let (status, page) = api
            .get(&format!("after={after}&limit=7"), Some(TOKEN))
            .await;
        assert_eq!(status, 200, "{page}");
        let data: Vec<Change> = serde_json::from_value(page["data"].clone()).unwrap();
        assert!(data.len() <= 7);
        after = page["next_after"].as_i64().unwrap();
        let more = page["has_more"].as_bool().unwrap();
        if let Some(last) = data.last() {
            assert_eq!(after, last.seq);
        }
        seen.extend(data);
        if !more {
            break;
        }
    }
    assert_eq!(seen.len() as i64, written);
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq), "seq order");
    let first = seen
        .iter()
        .find(|c| c.kind == ChangeKind::UserProvisioned)
        .unwrap();
    let state = first.payload.user.as_ref().unwrap();
    assert!(
        state
            .external_id
            .as_deref()
            .is_some_and(|id| id.starts_with("00u"))
    );
    // An empty page keeps the cursor.
    let (_, page) = api.get(&format!("after={after}"), Some(TOKEN)).await;
    assert_eq!(
        page,
        json!({"data": [], "next_after": after, "has_more": false})
    );

    // Filters.
    let (_, page) = api
        .get(
            "after=0&limit=1000&kind=user.provisioned&organization_id=org_b",
            Some(TOKEN),
        )
        .await;
    let data: Vec<Change> = serde_json::from_value(page["data"].clone()).unwrap();
    assert_eq!(data.len(), 6);
    assert!(
        data.iter()
            .all(|c| c.kind == ChangeKind::UserProvisioned && c.organization_id == "org_b")
    );

    // Bad parameters, each named.
    for (query, parameter) in [
        ("limit=5", "after"),
        ("after=x", "after"),
        ("after=0&limit=1001", "limit"),
        ("after=0&kind=user.created", "kind"),
        ("after=0&wait=31", "wait"),
        ("after=0&afer=1", "afer"),
    ] {
        let (status, body) = api.get(query, Some(TOKEN)).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"], "bad_parameter");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
    }

    // Long-poll: answered as soon as a change commits, not at the deadline.
    let waiting = {
        let http = api.http.clone();
        let url = format!("{}/v1/changes?after={after}&wait=20", api.base);
        tokio::spawn(async move {
            let started = Instant::now();
            let page: Value = http
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), page)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.publish(&user(100, "org_a")).await;
    let (took, page) = waiting.await.unwrap();
    assert!(!page["data"].as_array().unwrap().is_empty(), "{page}");
    assert!(
        took < Duration::from_secs(20),
        "woken by the commit, not the deadline ({took:?})"
    );
    // With nothing to come, a long-poll ends empty at its deadline.
    let last = db.count("SELECT max(seq) AS n FROM changes").await;
    let (status, page) = api.get(&format!("after={last}&wait=1"), Some(TOKEN)).await;
    assert_eq!((status, page["data"].as_array().unwrap().len()), (200, 0));

    // A cursor below what retention pruned: 410, and where to start again.
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE change_relay SET pruned_through = 10"),
        &mut db.connect().await,
    )
    .await
    .unwrap();
    let (status, body) = api.get("after=3", Some(TOKEN)).await;
    assert_eq!(status, 410);
    assert_eq!(body["error"], "cursor_expired");
    assert_eq!(body["oldest_after"], 10);
    assert_eq!(api.get("after=10", Some(TOKEN)).await.0, 200);

    w.stop().await;
    env.finish().await;
}
