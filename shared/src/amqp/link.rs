//! A self-healing broker link: one named connection and a few confirm-mode channels, rebuilt
//! with backoff when the broker goes away. Callers never wait for a reconnect: while the link is
//! down, [`BrokerLink::channel`] fails at once so a request can be answered 503 quickly.

use super::topology::declare_topology;
use crate::contract::Topology;
use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// What the link is doing now (readiness probes read this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Ready,
    Closed,
}

/// Why the link cannot give out a channel.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the broker link is down")]
    Down,
    #[error("the broker is blocking publishers (resource alarm)")]
    Blocked,
    #[error("broker error")]
    Broker(#[from] lapin::Error),
}

struct Live {
    connection: Arc<Connection>,
    channels: Vec<Channel>,
}

struct Inner {
    url: String,
    name: String,
    /// What this link declares on every (re)connect; `None` for a publisher that may only
    /// publish (ingest: its broker user has no configure permission).
    topology: Option<Topology>,
    channel_count: usize,
    live: Mutex<Option<Live>>,
    next: AtomicUsize,
    generation: AtomicU64,
    state: watch::Sender<LinkState>,
    wake: Notify,
    stop: watch::Sender<bool>,
}

/// Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct BrokerLink {
    inner: Arc<Inner>,
}

impl BrokerLink {
    /// Starts the supervisor. It connects, declares the topology (if given) and opens
    /// `channels` confirm channels, then watches them and starts again whenever they fail.
    pub fn start(
        url: String,
        connection_name: String,
        topology: Option<Topology>,
        channels: usize,
    ) -> Self {
        let (state, _) = watch::channel(LinkState::Connecting);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            url,
            name: connection_name,
            topology,
            channel_count: channels.max(1),
            live: Mutex::new(None),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            state,
            wake: Notify::new(),
            stop,
        });
        tokio::spawn(supervise(Arc::clone(&inner)));
        Self { inner }
    }

    pub fn state(&self) -> LinkState {
        *self.inner.state.borrow()
    }

    pub fn is_ready(&self) -> bool {
        self.state() == LinkState::Ready
    }

    /// Incremented on every successful (re)connect, so consumers know to re-subscribe.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Whether the broker has blocked the connection (a memory or disk alarm): it reads
    /// nothing more from it, so publishes and channel opens on it wait until the alarm clears.
    pub fn is_blocked(&self) -> bool {
        self.inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|l| l.connection.status().blocked())
    }

    /// Waits until the link is ready, up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.state.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s == LinkState::Ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A confirm-mode channel (round-robin), or an immediate error while the link is down.
    pub fn channel(&self) -> Result<Channel, LinkError> {
        let live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(live) = live.as_ref() else {
            return Err(LinkError::Down);
        };
        if live.connection.status().blocked() {
            return Err(LinkError::Blocked);
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % live.channels.len();
        let channel = live.channels[i].clone();
        if !channel.status().connected() {
            self.inner.wake.notify_one();
            return Err(LinkError::Down);
        }
        Ok(channel)
    }

    /// Opens a fresh channel on the current connection (for consumers).
    pub async fn open_channel(&self) -> Result<Channel, LinkError> {
        let connection = {
            let live = self
                .inner
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            live.as_ref().map(|l| Arc::clone(&l.connection))
        };
        let Some(connection) = connection else {
            return Err(LinkError::Down);
        };
        Ok(connection.create_channel().await?)
    }

    /// Tells the supervisor something failed, so it re-checks the connection at once.
    pub fn report_failure(&self) {
        self.inner.wake.notify_one();
    }

    /// Closes the connection (after in-flight confirms were awaited by their callers).
    pub async fn close(&self) {
        self.inner.stop.send_replace(true);
        self.inner.wake.notify_one();
        let live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(live) = live {
            for ch in &live.channels {
                let _ = ch.wait_for_confirms().await;
            }
            let _ = live.connection.close(200, "shutdown".into()).await;
        }
        self.inner.state.send_replace(LinkState::Closed);
    }
}

async fn establish(inner: &Inner) -> Result<Live, lapin::Error> {
    let connection = super::connect(&inner.url, &inner.name).await?;
    if let Some(topology) = &inner.topology {
        declare_topology(&connection, topology).await?;
    }
    let mut channels = Vec::with_capacity(inner.channel_count);
    for _ in 0..inner.channel_count {
        let ch = connection.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        channels.push(ch);
    }
    Ok(Live {
        connection: Arc::new(connection),
        channels,
    })
}

fn healthy(inner: &Inner) -> bool {
    let live = inner.live.lock().unwrap_or_else(PoisonError::into_inner);
    live.as_ref().is_some_and(|l| {
        l.connection.status().connected() && l.channels.iter().all(|c| c.status().connected())
    })
}

async fn supervise(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let mut delays = builder.build();
    while !*stop.borrow() {
        match establish(&inner).await {
            Ok(live) => {
                *inner.live.lock().unwrap_or_else(PoisonError::into_inner) = Some(live);
                inner.generation.fetch_add(1, Ordering::AcqRel);
                inner.state.send_replace(LinkState::Ready);
                tracing::info!(connection = %inner.name, "broker link ready");
                delays = builder.build();
                while healthy(&inner) {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = inner.wake.notified() => {}
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() {
                        return;
                    }
                }
                tracing::warn!(connection = %inner.name, "broker link lost; reconnecting");
                inner.state.send_replace(LinkState::Connecting);
                let old = inner
                    .live
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(old) = old {
                    let _ = old.connection.close(320, "reconnecting".into()).await;
                }
            }
            Err(error) => {
                inner.state.send_replace(LinkState::Connecting);
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(connection = %inner.name, error = %crate::Chain(&error), ?delay, "broker connect failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}
