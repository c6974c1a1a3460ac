//! Fills the apply queue straight from a lapin publisher (as ingest would have, same exchange,
//! routing key and headers), so the worker's drain can be measured without running ingest first.

use lapin::options::ConfirmSelectOptions;
use shared::Topology;
use shared::amqp::declare_topology;

/// Publishes `n` bench events (ids from `id_base`) into `topology`'s events exchange, confirmed.
pub async fn prefill(
    url: &str,
    topology: &Topology,
    n: usize,
    id_base: usize,
) -> anyhow::Result<()> {
    let conn = shared::amqp::connect(url, "bench-prefill").await?;
    declare_topology(&conn, topology).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    super::baseline::pipelined(&ch, n, 256, |i| {
        super::ingest_message(topology, id_base + i)
    })
    .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
