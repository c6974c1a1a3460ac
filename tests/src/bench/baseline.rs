//! The baselines: what RabbitMQ and PostgreSQL can do here without our code in the way.

use super::percentile;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct PubResult {
    pub messages: usize,
    pub msgs_per_s: f64,
    pub confirm_p50_ms: f64,
    pub confirm_p99_ms: f64,
}

/// B_pub: a raw lapin publisher — persistent, mandatory, pipelined confirms (`window` in flight)
/// — into a quorum queue, like ingest's.
pub async fn raw_publisher(url: &str, n: usize, window: usize) -> anyhow::Result<PubResult> {
    let conn = shared::amqp::connect(url, "bench-raw-publisher").await?;
    let ch = conn.create_channel().await?;
    let queue = format!("bench.raw.{:x}", rand::random::<u32>());
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = super::event_body(0, "org_bench");
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<f64>> = futures_util::stream::iter(0..n)
        .map(|_| {
            let ch = ch.clone();
            let queue = queue.clone();
            let body = body.clone();
            async move {
                let t = Instant::now();
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into());
                let confirm = ch
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        props,
                    )
                    .await?
                    .await?;
                anyhow::ensure!(confirm.is_ack(), "nack");
                Ok(t.elapsed().as_secs_f64() * 1000.0)
            }
        })
        .buffer_unordered(window)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut ms: Vec<f64> = latencies.into_iter().collect::<anyhow::Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(PubResult {
        messages: n,
        msgs_per_s: n as f64 / elapsed,
        confirm_p50_ms: percentile(&ms, 0.5),
        confirm_p99_ms: percentile(&ms, 0.99),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct SqlResult {
    pub batched_rows_per_s: f64,
    pub batch_size: usize,
    pub single_row_commits_per_s: f64,
}

/// B_sql: the same user upserts written straight to `directory_users`, batched (one multi-row
/// statement per transaction) and one row per commit.
pub async fn sql_upserts(
    db_url: &str,
    rows: usize,
    batch: usize,
    single: usize,
) -> anyhow::Result<SqlResult> {
    let mut conn = AsyncPgConnection::establish(db_url).await?;
    let upsert_prefix = "INSERT INTO directory_users (organization_id, directory_user_id, email, given_name, family_name, display_name, preferred_username, active, attributes, source_updated_at, source_event_id) VALUES ";
    let upsert_suffix = " ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET email = excluded.email, given_name = excluded.given_name, family_name = excluded.family_name, display_name = excluded.display_name, attributes = excluded.attributes, source_updated_at = excluded.source_updated_at, source_event_id = excluded.source_event_id, updated_at = now()";
    let row = |i: usize| {
        let attrs = serde_json::json!({"padding": "x".repeat(560)})
            .to_string()
            .replace('\'', "''");
        format!(
            "('org_sql', 'diruser_{i:07}', 'user{i}@example.com', 'Bench', 'User{i}', 'Bench User{i}', 'u{i}', true, '{attrs}'::jsonb, now(), 'evt_sql_{i}')"
        )
    };
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let values: Vec<String> = (i..(i + batch).min(rows)).map(row).collect();
        let sql = format!("{upsert_prefix}{}{upsert_suffix}", values.join(","));
        diesel::sql_query("BEGIN").execute(&mut conn).await?;
        diesel::sql_query(sql).execute(&mut conn).await?;
        diesel::sql_query("COMMIT").execute(&mut conn).await?;
        i += batch;
    }
    let batched = rows as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..single {
        let sql = format!("{upsert_prefix}{}{upsert_suffix}", row(rows + i));
        diesel::sql_query(sql).execute(&mut conn).await?;
    }
    let single_rate = single as f64 / started.elapsed().as_secs_f64();
    diesel::sql_query("DELETE FROM directory_users WHERE organization_id = 'org_sql'")
        .execute(&mut conn)
        .await?;
    Ok(SqlResult {
        batched_rows_per_s: batched,
        batch_size: batch,
        single_row_commits_per_s: single_rate,
    })
}
