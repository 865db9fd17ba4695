//! The `mqtt` connector over rumqttc's MQTT 5 client (no TLS built in).
//!
//! Options live in [`options`]; the client and its event-loop task in [`client`]; the source
//! (persistent session, QoS 1, acknowledgements after the checkpoint completes: at-least-once
//! end to end) in [`source`] with its decoding in [`decode`] and its acknowledgement order in
//! [`acks`]; the sink (one JSON object per row, at-least-once) in [`sink`]. Flink has no MQTT
//! connector, so the option names are Weir's own (see `docs/connectors.md`).

mod acks;
mod client;
mod decode;
pub(crate) mod options;
pub mod sink;
pub mod source;

pub use options::NAME;
pub use sink::MqttSinkFactory;
pub use source::MqttSourceFactory;
