//! Fills the apply queue straight from a lapin publisher (as ingest would have, same exchange,
//! routing key and headers), so the worker's drain can be measured without running ingest first.

use lapin::options::ConfirmSelectOptions;
use shared::amqp::{declare_topology, properties};
use shared::{MessageMeta, Source, Topology};

/// Publishes `n` bench events (ids from `id_base`) into `topology`'s events exchange, confirmed.
pub async fn prefill(
    url: &str,
    topology: &Topology,
    n: usize,
    id_base: usize,
) -> anyhow::Result<()> {
    let conn = shared::amqp::connect(url, "bench-prefill").await?;
    let ch = conn.create_channel().await?;
    declare_topology(&ch, topology).await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let exchange = topology.exchange();
    let event_type = "organization.directory.user_updated";
    super::baseline::pipelined(&ch, n, 256, |i| {
        let meta = MessageMeta {
            message_id: format!("evt_bench_{:09}", id_base + i),
            webhook_id: Some(format!("msg_bench_{}", id_base + i)),
            event_type: event_type.to_owned(),
            organization_id: Some("org_bench".to_owned()),
            occurred_at: None,
            source: Source::Webhook,
            retry_count: 0,
            replay_count: 0,
        };
        (
            exchange.clone(),
            event_type.to_owned(),
            super::event_body(id_base + i, "org_bench"),
            properties(&meta),
        )
    })
    .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
