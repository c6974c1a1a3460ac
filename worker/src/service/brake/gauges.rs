//! Samples what the brake holds into `scim_deprovision_brake_engaged` and
//! `scim_deprovision_brake_held_events`, per organization, for the alert and the dashboard.

use super::store;
use crate::service::db::Pool;
use crate::service::metrics::{Metrics, OrgLabels};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

pub async fn run(pool: Pool, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut shown: HashSet<String> = HashSet::new();
    loop {
        let counts = match pool.get().await {
            Ok(mut conn) => store::held_counts(&mut conn).await.ok(),
            Err(_) => None,
        };
        if let Some(counts) = counts {
            let now: HashSet<String> = counts.iter().map(|(o, _)| o.clone()).collect();
            // Organizations released or discarded since: back to 0.
            for org in shown.difference(&now) {
                let labels = OrgLabels {
                    organization_id: org.clone(),
                };
                metrics.brake_engaged.get_or_create(&labels).set(0);
                metrics.brake_held.get_or_create(&labels).set(0);
            }
            for (org, held) in counts {
                let labels = OrgLabels {
                    organization_id: org,
                };
                metrics.brake_engaged.get_or_create(&labels).set(1);
                metrics.brake_held.get_or_create(&labels).set(held);
            }
            shown.extend(now);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}
