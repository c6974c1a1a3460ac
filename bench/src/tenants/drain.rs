//! The brake's cost: an update-heavy drain with the brake at its default against off.

use super::{processed, publish, retries, update_heavy};
use std::time::{Duration, Instant};
use testkit::stack::Stack;

/// One drain of the update phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drain {
    pub brake: bool,
    /// Percent of the update phase that deprovisions.
    pub deprovisions: u32,
    pub events: usize,
    pub seconds: f64,
    pub retries: f64,
    pub held: i64,
}

impl Drain {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// The update-heavy drain with the brake at its default (`brake`) or off, `deprovisions`
/// percent of its events deprovisioning: 5 keeps every organization far from the brake's
/// threshold (about 8 % of its users in the window, against 20 %); 15 brings them to it.
pub async fn drain(brake: bool, deprovisions: u32) -> anyhow::Result<Drain> {
    let (setup, phase) = update_heavy(20, 1500, 50_000, deprovisions);
    let mut stack = Stack::new(if brake { "brakeon" } else { "brakeoff" }).await?;
    stack.brake_off = !brake;
    stack.declare_topology().await?;
    stack.start_worker().await?;
    publish(&stack.amqp, &stack.topology, &setup).await?;
    let n = i64::try_from(setup.len())?;
    crate::load::time_until(n, || processed(&stack), Duration::from_secs(600)).await?;
    if let Some(mut w) = stack.workers.pop() {
        w.terminate(Duration::from_secs(30)).await;
    }
    publish(&stack.amqp, &stack.topology, &phase).await?;
    let started = Instant::now();
    stack.start_worker().await?;
    let total = n + i64::try_from(phase.len())?;
    crate::load::time_until(total, || processed(&stack), Duration::from_secs(900)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let drain = Drain {
        brake,
        deprovisions,
        events: phase.len(),
        seconds,
        retries: retries(&stack).await,
        held: stack
            .count("SELECT count(*) AS n FROM held_events")
            .await
            .unwrap_or(-1),
    };
    stack.teardown().await;
    Ok(drain)
}
