//! The RabbitMQ adapter shared by ingest and worker (feature `amqp`): topology declaration,
//! message properties from [`crate::MessageMeta`], a confirmed publisher and a self-healing link.

mod headers;
mod link;
mod publish;
pub mod tls;
mod topology;

pub use headers::{header_str, header_u32, mark_dead, meta_from_properties, properties};
pub use link::{BrokerLink, LinkError, LinkState};
pub use publish::{
    Outgoing, PublishError, confirm_within, mandatory, publish_confirmed, settled, start_all,
};
pub use topology::{dead_queue_args, declare_topology};

pub use lapin;

/// Connects with a `connection_name` so the RabbitMQ dashboard shows who is who. `url` may
/// name several nodes of one cluster, comma-separated: the first that answers is used, so a
/// reconnect after losing a node goes to another.
pub async fn connect(url: &str, connection_name: &str) -> Result<lapin::Connection, lapin::Error> {
    let nodes = crate::redact::split_url_list(url);
    let mut last = None;
    for node in &nodes {
        match tokio::time::timeout(NODE_CONNECT_TIMEOUT, connect_node(node, connection_name)).await
        {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => {
                if nodes.len() > 1 {
                    tracing::warn!(node = %crate::redact::redact_url(node), error = %crate::Chain(&e), "broker node unreachable; trying the next");
                }
                last = Some(e);
            }
            Err(_) => {
                tracing::warn!(node = %crate::redact::redact_url(node), "broker node did not answer in time; trying the next");
                last = Some(lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no connection to {} within {NODE_CONNECT_TIMEOUT:?}",
                        crate::redact::redact_url(node)
                    ),
                )));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "AMQP_URL names no broker",
        ))
    }))
}

/// How long one node may take to accept a connection before the next is tried (a paused or
/// cut-off node does not refuse, it just does not answer).
pub const NODE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One node of `AMQP_URL`.
async fn connect_node(url: &str, connection_name: &str) -> Result<lapin::Connection, lapin::Error> {
    let props = lapin::ConnectionProperties::default()
        .with_connection_name(connection_name.to_owned().into());
    let uri = with_default_heartbeat(parse_url(url)?);
    let tls = tls::config().map_err(|e| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            crate::Chain(&e).to_string(),
        ))
    })?;
    lapin::Connection::connect_uri_with_config(uri, props, tls, lapin::runtime::default_runtime()?)
        .await
}

/// Seconds between AMQP heartbeats unless the URL says (`?heartbeat=N`): a connection whose
/// peer went away without closing it (a node killed or cut off) is found dead within about
/// three of them, not the broker's default minute times two.
pub const DEFAULT_HEARTBEAT_SECONDS: u16 = 10;

fn with_default_heartbeat(mut uri: lapin::uri::AMQPUri) -> lapin::uri::AMQPUri {
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_SECONDS);
    }
    uri
}

/// The URL, parsed here rather than by lapin: its parse error would quote the whole URL,
/// password included; this one shows it redacted.
fn parse_url(url: &str) -> Result<lapin::uri::AMQPUri, lapin::Error> {
    url.parse().map_err(|_| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a valid AMQP URL: {}", crate::redact::redact_url(url)),
        ))
    })
}

/// Checks `AMQP_URL` at start-up: one or more URLs ([`crate::redact::split_url_list`]), each
/// `amqp://` or `amqps://` and parseable. The error names the node, redacted.
pub fn check_url_list(list: &str) -> Result<(), String> {
    let nodes = crate::redact::split_url_list(list);
    if nodes.is_empty() {
        return Err("names no broker".to_owned());
    }
    for (i, node) in nodes.iter().enumerate() {
        let which = if nodes.len() == 1 {
            String::new()
        } else {
            format!("node {} of {}: ", i + 1, nodes.len())
        };
        if !(node.starts_with("amqp://") || node.starts_with("amqps://")) {
            return Err(format!(
                "{which}not an amqp:// or amqps:// URL: {}",
                crate::redact::redact_url(node)
            ));
        }
        parse_url(node).map_err(|_| {
            format!(
                "{which}not a valid AMQP URL: {}",
                crate::redact::redact_url(node)
            )
        })?;
    }
    Ok(())
}

/// Ready messages in `queue` now (a passive declare: it never creates the queue, and fails
/// when there is none).
pub async fn queue_depth(channel: &lapin::Channel, queue: &str) -> Result<u32, lapin::Error> {
    Ok(queue_counts(channel, queue).await?.0)
}

/// A queue's ready messages and consumers (passive declare; a missing queue is an error and
/// closes the channel).
pub async fn queue_counts(
    channel: &lapin::Channel,
    queue: &str,
) -> Result<(u32, u32), lapin::Error> {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await?;
    Ok((q.message_count(), q.consumer_count()))
}

/// `host + role`, e.g. `worker-7d9f-ingest`: the pod name on Kubernetes, else the host name.
pub fn connection_name(role: &str) -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}-{role}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_malformed_url_is_reported_without_its_password() {
        for url in [
            "amqp:guest:hunter2@host/",
            "amqp://guest:hunter2@host:notaport/",
            "amqp://guest:hunter2@[::1/",
            "amqpx://guest:hunter2@host/",
        ] {
            let error = super::parse_url(url).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
            assert!(error.contains("not a valid AMQP URL"), "{error}");
        }
        assert!(super::parse_url("amqp://guest:hunter2@127.0.0.1:5672/%2f").is_ok());
    }

    #[test]
    fn heartbeats_are_on_unless_the_url_sets_them() {
        let uri = |u: &str| super::with_default_heartbeat(super::parse_url(u).unwrap());
        assert_eq!(uri("amqp://g:g@h:5672/%2f").query.heartbeat, Some(10));
        assert_eq!(
            uri("amqp://g:g@h:5672/%2f?heartbeat=30").query.heartbeat,
            Some(30)
        );
        assert_eq!(
            uri("amqp://g:g@h:5672/%2f?heartbeat=0").query.heartbeat,
            Some(0)
        );
    }

    #[test]
    fn a_url_list_is_checked_node_by_node() {
        assert_eq!(
            super::check_url_list("amqp:guest:hunter2@host:5672:x/%2f"),
            Err("not an amqp:// or amqps:// URL: <unparseable url>".to_owned())
        );
        let error = super::check_url_list(
            "amqps://u:pw1@h1:5671/v,amqps://u:hunter2@h2:notaport/v,amqps://u:pw3@h3/v",
        )
        .unwrap_err();
        assert_eq!(
            error,
            "node 2 of 3: not a valid AMQP URL: amqps://u:***@h2:notaport/v"
        );
        assert_eq!(
            super::check_url_list(" , "),
            Err("names no broker".to_owned())
        );
        assert_eq!(
            super::check_url_list("amqp://u:p%2F%3F%23%40%3As@h1:5672/%2f,amqp://u:x@h2/%2f"),
            Ok(())
        );
        // Raw separators in a password do not parse; the message still hides every byte.
        let error = super::check_url_list("amqp://u:p/?#@:s@h1:5672/%2f").unwrap_err();
        assert!(!error.contains("p/?#"), "{error}");
    }
}
