//! Hostile input at the door: each request gets its status, cheap checks come before the body
//! is read or any HMAC computed, slow bodies are cut, and ingest keeps serving throughout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use testkit::ingest::*;
use testkit::{fixture, signed_headers, signed_headers_at};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Sends a request's head (and `body_start` of its body) over a raw connection and returns
/// the status line's code, or `None` if the connection closed without one.
async fn raw(app: &TestApp, head: &[u8], body_start: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr(app)).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.write_all(body_start).await.unwrap();
    let mut buf = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

fn head(headers: &[(String, String)], content_length: usize) -> Vec<u8> {
    let mut h = format!(
        "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n",
        ingest::WEBHOOK_PATH
    );
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

async fn code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let json: serde_json::Value = resp.json().await.unwrap_or_default();
    (
        status,
        json["error"]
            .as_str()
            .or(json["status"].as_str())
            .unwrap_or("")
            .to_owned(),
    )
}

async fn still_serving(app: &TestApp, id: &str) {
    let body = fixture("03_user_created.json");
    assert_eq!(app.post_signed(id, &body).await.status(), 202, "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_cannot_verify_are_answered_before_the_body_arrives() {
    let app = spawn_app().await;
    let body = fixture("03_user_created.json");
    let good = signed_headers(&app.secret, "msg_cheap", &body);
    let now = chrono::Utc::now().timestamp();
    let with = |i: usize, v: &str| {
        let mut h = good.clone();
        h[i].1 = v.to_owned();
        h
    };
    // The head declares a body that is never sent: only an answer made from the headers alone
    // can come back.
    let cases: Vec<(Vec<(String, String)>, u16)> = vec![
        (with(2, "v1a,abc v2,xyz"), 400),
        (with(2, &"v1,short ".repeat(3000)), 400),
        (
            signed_headers_at(&app.secret, "msg_cheap", &body, now - 3600),
            400,
        ),
        (with(1, "99999999999999999999"), 400),
        (with(1, "-1700000000"), 400),
        (with(1, "+1700000000"), 400),
        (with(0, &"i".repeat(257)), 400),
    ];
    for (headers, status) in cases {
        let started = Instant::now();
        let got = raw(&app, &head(&headers, 4096), b"").await;
        assert_eq!(got, Some(status), "{:?}", &headers[..2]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answered only after {:?}",
            started.elapsed()
        );
    }
    let metrics = app.metrics.render();
    assert!(
        metrics.contains(r#"outcome="invalid_header"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outcome="invalid_timestamp"} 3"#),
        "{metrics}"
    );
    still_serving(&app, "msg_after_cheap").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_headers_get_their_status() {
    let app = spawn_app().await;
    let body = fixture("03_user_created.json");

    // An id of 256 bytes is taken, 257 is not.
    let id256 = "m".repeat(256);
    assert_eq!(code(app.post_signed(&id256, &body).await).await.0, 202);
    let id257 = "m".repeat(257);
    assert_eq!(
        code(app.post_signed(&id257, &body).await).await,
        (400, "invalid_header".to_owned())
    );

    // A repeated webhook-* header is ambiguous: which one was signed?
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let headers = signed_headers(&app.secret, "msg_dup", &body);
        let extra = headers.iter().find(|(k, _)| k == name).unwrap().clone();
        let mut req = app
            .client
            .post(app.url(ingest::WEBHOOK_PATH))
            .body(body.clone());
        for (k, v) in headers.iter().chain(std::iter::once(&extra)) {
            req = req.header(k, v);
        }
        assert_eq!(
            code(req.send().await.unwrap()).await,
            (400, "invalid_header".to_owned()),
            "{name}"
        );
    }

    // obs-text (bytes ≥ 0x80) in the id: present, but not text.
    let mut headers = signed_headers(&app.secret, "msg_obs", &body);
    headers.retain(|(k, _)| k != "webhook-id");
    let mut h = head(&headers, body.len());
    let at = h.len() - 2;
    h.splice(at..at, b"webhook-id: caf\xe9\r\n".iter().copied());
    assert_eq!(raw(&app, &h, &body).await, Some(400));

    // 100 extra headers: refused by the HTTP layer, before anything of ours.
    let mut many = signed_headers(&app.secret, "msg_many", &body);
    many.extend((0..100).map(|i| (format!("x-filler-{i}"), "y".to_owned())));
    let got = raw(&app, &head(&many, body.len()), &body).await;
    assert!(
        got.is_none_or(|s| (400..500).contains(&s)),
        "{got:?} for 100+ headers"
    );

    // Thousands of signature entries: only the first 16 are looked at.
    let signed = signed_headers(&app.secret, "msg_sigs", &body);
    let real = signed[2].1.clone();
    let noise = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ".repeat(2000);
    let mut first = signed.clone();
    first[2].1 = format!("{real} {noise}");
    assert_eq!(code(app.post(&body, &first).await).await.0, 202);
    let mut last = signed.clone();
    last[2].1 = format!("{noise}{real}");
    assert_eq!(
        code(app.post(&body, &last).await).await,
        (400, "invalid_signature".to_owned())
    );
    still_serving(&app, "msg_after_headers").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_signed_bodies_are_queued_or_dead_lettered_never_lost() {
    let app = spawn_app().await;
    let event = |id: &str, ty: &str, extra: &str| {
        format!(
            r#"{{"spec_version":"1","id":"{id}","type":"{ty}","object":"DirectoryUser","environment_id":"env_1","organization_id":"org_1","occurred_at":"2026-01-01T10:00:00Z","data":{{"id":"diruser_1","organization_id":"org_1"{extra}}}}}"#
        )
        .into_bytes()
    };
    let ty = "organization.directory.user_updated";
    // Ingest reads only the envelope's head (id, type, organization, time): what is wrong there
    // is dead-lettered at once; what is wrong inside `data` (invalid UTF-8, a lone surrogate,
    // 1e999) is queued, and the worker, which parses `data`, dead-letters it as malformed.
    let mut bad_type = event("evt_h1", ty, "");
    let at = bad_type.windows(7).position(|w| w == b"updated").unwrap();
    bad_type[at] = 0xff;
    let mut bad_data = event("evt_h0", ty, r#","given_name":"X""#);
    let at = bad_data.len() - 4;
    bad_data[at] = 0xff;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("utf8 type", bad_type, "dead_lettered"),
        ("utf8 data", bad_data, "queued"),
        ("surrogate", event(r"evt_\ud800", ty, ""), "dead_lettered"),
        (
            "surrogate data",
            event("evt_h2", ty, r#","given_name":"\ud800""#),
            "queued",
        ),
        ("1e999", event("evt_h3", ty, r#","n":1e999"#), "queued"),
        (
            "nul",
            event("evt_h4", ty, r#","given_name":"a\u0000b""#),
            "queued",
        ),
        ("id255", event(&"e".repeat(255), ty, ""), "queued"),
        ("id256", event(&"e".repeat(256), ty, ""), "dead_lettered"),
        (
            "type256",
            event("evt_h5", &"t".repeat(256), ""),
            "dead_lettered",
        ),
        ("not json", b"\x00\x01binary".to_vec(), "dead_lettered"),
    ];
    for (name, body, expected) in cases {
        let (status, what) = code(app.post_signed(&format!("msg_{name}"), &body).await).await;
        assert_eq!((status, what.as_str()), (202, expected), "{name}");
    }
    // Every one reached the broker: queued to the events exchange or dead-lettered.
    let mut seen = 0;
    while app
        .tap
        .get(&app.tap_queue, Duration::from_millis(500))
        .await
        .unwrap()
        .is_some()
    {
        seen += 1;
    }
    assert_eq!(
        seen, 5,
        "the tap sees the events exchange: the five queued ones"
    );
    still_serving(&app, "msg_after_bodies").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_are_cut_and_signed_webhooks_keep_being_answered() {
    let app = spawn_with(&testkit::amqp_url(), &["--body-timeout", "2s"], true).await;
    let body = fixture("03_user_created.json");
    // Headers that pass the cheap checks (a well-formed signature that will not match), then a
    // declared 1 MiB body sent a byte a second.
    let plausible = {
        let mut h = signed_headers(&app.secret, "msg_slow", &body);
        h[2].1 = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=".to_owned();
        h
    };
    let head = head(&plausible, 1024 * 1024);
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..300 {
        let head = head.clone();
        let target = addr(&app);
        slow.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(target).await.ok()?;
            stream.write_all(&head).await.ok()?;
            let mut buf = vec![0; 512];
            for _ in 0..30 {
                if stream.write_all(b"{").await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some((None, Instant::now())),
                    Ok(Ok(n)) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let status = text.split_whitespace().nth(1).map(str::to_owned);
                        return Some((status, Instant::now()));
                    }
                    Err(_) => {}
                }
            }
            Some((None, Instant::now()))
        }));
    }
    // Meanwhile, signed webhooks are answered.
    for i in 0..20 {
        still_serving(&app, &format!("msg_during_{i}")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut timed_out = 0;
    for s in slow {
        let (status, at) = s.await.unwrap().expect("connected");
        assert!(
            at - started < Duration::from_secs(10),
            "a trickling client held on for {:?}",
            at - started
        );
        if status.as_deref() == Some("408") {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 300, "every trickled body is answered 408");
    let metrics = app.metrics.render();
    assert!(
        metrics.contains(r#"outcome="body_timeout"} 300"#),
        "{metrics}"
    );
    still_serving(&app, "msg_after_slow").await;
    app.stop().await;
}
