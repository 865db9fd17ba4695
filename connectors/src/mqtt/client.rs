//! The MQTT 5 client (rumqttc) of the source and the sink: its options from the table's, and
//! the task that polls its event loop without pause (keep-alives, acknowledgements, reconnects
//! with a short backoff), handing what the broker sends to the source or sink through channels.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, Packet, PubAckReason, Publish, RetainForwardRule,
    SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions as ClientOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::options::MqttOptions;

/// How long a persistent session outlives its connection (MQTT 5's session expiry): as long
/// as the broker allows.
const SESSION_EXPIRY_SECS: u32 = u32::MAX;

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The QoS of `level` (0, 1 or 2; anything else is 1).
pub(crate) fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// A client and its event loop for `options`; `manual_acks` for a source that acknowledges
/// on checkpoints.
pub(crate) fn connect(options: &MqttOptions, manual_acks: bool) -> (AsyncClient, EventLoop) {
    let mut o = ClientOptions::new(
        options.client_id.clone(),
        options.broker.host.clone(),
        options.broker.port,
    );
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_start(options.clean_session);
    let expiry = (!options.clean_session).then_some(SESSION_EXPIRY_SECS);
    o.set_session_expiry_interval(expiry);
    o.set_receive_maximum(Some(options.max_inflight));
    o.set_manual_acks(manual_acks);
    if let Some(c) = &options.credentials {
        o.set_credentials(c.username.clone(), c.password.0.clone());
    }
    if let Some(t) = &options.tls {
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca: t.ca.clone(),
                alpn: None,
                client_auth: t.client.clone(),
            },
        ));
    }
    // Acknowledgements and dead letters queue here; room for a full inflight window of acks.
    let capacity = usize::from(options.max_inflight) + 1024;
    AsyncClient::new(o, capacity)
}

/// The subscriptions of a source: each filter at the table's QoS; retained messages only
/// when the subscription is new (not again on every reconnect).
pub(crate) fn filters(options: &MqttOptions) -> Vec<Filter> {
    options
        .topics
        .iter()
        .map(|t| {
            let mut f = Filter::new(t.clone(), qos(options.qos));
            f.retain_forward_rule = RetainForwardRule::OnNewSubscribe;
            f
        })
        .collect()
}

/// What the source's event-loop task hands on.
#[derive(Debug)]
pub(crate) enum Inbound {
    Publish(Box<Publish>),
    /// A (new) connection is up; earlier unacknowledged messages will be sent again.
    Connected,
    /// The broker refused something that retrying will not fix.
    Failed(String),
}

/// Why a connection error stops the job, or `None` when reconnecting may help.
pub(crate) fn fatal(e: &ConnectionError) -> Option<String> {
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword
            | ConnectReturnCode::NotAuthorized
            | ConnectReturnCode::BadClientId
            | ConnectReturnCode::ClientIdentifierNotValid
            | ConnectReturnCode::Banned
            | ConnectReturnCode::BadAuthenticationMethod
            | ConnectReturnCode::RefusedProtocolVersion
            | ConnectReturnCode::UnsupportedProtocolVersion => {
                Some(format!("the broker refused the connection: {code:?}"))
            }
            _ => None,
        },
        // A certificate the CA did not sign, a name that does not match: retrying cannot help.
        ConnectionError::Tls(e) => Some(format!("TLS with the broker failed: {e}")),
        _ => None,
    }
}

/// The first subscription the broker refused, in words.
pub(crate) fn refused_subscription(
    codes: &[SubscribeReasonCode],
    topics: &[String],
) -> Option<String> {
    codes.iter().enumerate().find_map(|(i, c)| match c {
        SubscribeReasonCode::Success(_) => None,
        other => Some(format!(
            "option 'topic': the broker refused the subscription to '{}': {other:?}",
            topics.get(i).map_or("?", String::as_str)
        )),
    })
}

/// Wait before reconnecting after `e`; the next wait doubles up to [`MAX_BACKOFF`].
async fn back_off(e: &ConnectionError, backoff: &mut Duration, client_id: &str) {
    tracing::warn!("mqtt client '{client_id}': {e}; reconnecting in {backoff:?}");
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

/// Poll the source's event loop for as long as the source lives: publishes go to `tx`; every
/// connection subscribes to the table's topics (a resumed session keeps its subscriptions, and
/// retained messages come only for a new one).
pub(crate) fn spawn_source_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    options: &MqttOptions,
    tx: mpsc::Sender<Inbound>,
) -> JoinHandle<()> {
    let (filters, topics) = (filters(options), options.topics.clone());
    let id = options.client_id.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let inbound = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => Inbound::Publish(Box::new(p)),
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    match client.try_subscribe_many(filters.clone()) {
                        Ok(()) => Inbound::Connected,
                        Err(e) => Inbound::Failed(format!("cannot subscribe: {e}")),
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    match refused_subscription(&s.return_codes, &topics) {
                        Some(m) => Inbound::Failed(m),
                        None => continue,
                    }
                }
                Ok(_) => continue,
                Err(e) => match fatal(&e) {
                    Some(m) => Inbound::Failed(m),
                    None => {
                        back_off(&e, &mut backoff, &id).await;
                        continue;
                    }
                },
            };
            let failed = matches!(inbound, Inbound::Failed(_));
            if tx.send(inbound).await.is_err() || failed {
                return;
            }
        }
    })
}

/// What the sink's event-loop task reports: acknowledgements received, or why it stopped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Delivery {
    pub(crate) acked: u64,
    pub(crate) failed: Option<String>,
}

/// Poll the sink's event loop for as long as the sink lives, counting the broker's
/// acknowledgements (PUBACK for QoS 1, PUBCOMP for QoS 2) in `status`.
pub(crate) fn spawn_sink_loop(
    mut eventloop: EventLoop,
    client_id: String,
    status: watch::Sender<Delivery>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let failed = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(a))) => match a.reason {
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                    other => Some(format!("the broker refused a message: {other:?}")),
                },
                Ok(Event::Incoming(Packet::PubComp(_))) => None,
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => continue,
                Err(e) => match fatal(&e) {
                    Some(m) => Some(m),
                    None => {
                        back_off(&e, &mut backoff, &client_id).await;
                        continue;
                    }
                },
            };
            let stop = failed.is_some();
            status.send_modify(|d| match failed {
                Some(m) => d.failed = Some(m),
                None => d.acked += 1,
            });
            if stop {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_retrying_cannot_fix_are_fatal() {
        let refused = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert_eq!(
            fatal(&refused).as_deref(),
            Some("the broker refused the connection: NotAuthorized")
        );
        let busy = ConnectionError::ConnectionRefused(ConnectReturnCode::ServerBusy);
        assert_eq!(fatal(&busy), None);
        let io = ConnectionError::Io(std::io::Error::other("reset"));
        assert_eq!(fatal(&io), None);
    }

    #[test]
    fn a_refused_subscription_names_its_topic() {
        let topics = vec!["a/+".to_string(), "b/#".to_string()];
        let codes = [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized,
        ];
        assert_eq!(
            refused_subscription(&codes, &topics).as_deref(),
            Some("option 'topic': the broker refused the subscription to 'b/#': NotAuthorized")
        );
        assert_eq!(refused_subscription(&codes[..1], &topics), None);
    }
}
