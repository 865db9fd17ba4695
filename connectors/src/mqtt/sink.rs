//! The `mqtt` sink: each row published as a JSON object (the Kafka sink's encoding) to
//! `'topic'`, or to the topic named in the row's `'sink.topic-column'`, at `'qos'` and with
//! `'sink.retain'`. Append-only. At-least-once: `pre_commit` and `finish` return only when the
//! broker has acknowledged every message published so far (PUBACK, or PUBCOMP at QoS 2), so a
//! completed checkpoint means delivered.

use std::time::Duration;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_engine::connector::{Sink, SinkContext, SinkFactory};
use weir_engine::observe::metrics::JobMetrics;
use weir_engine::{EngineError, Result};
use weir_planner::TableDef;

use super::client::{connect, qos, spawn_sink_loop, Delivery};
use super::options::{sink_topic, MqttOptions, NAME};
use crate::filesystem::Format;
use crate::kafka::writer::lines;
use crate::options::{bool_option, session_time_zone};

/// How long `pre_commit` and `finish` wait for the broker's acknowledgements.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Routing {
    /// `'topic'`: every row, or the rows whose topic column is NULL.
    pub(crate) topic: Option<String>,
    /// `'sink.topic-column'`: the column naming each row's topic.
    pub(crate) column: Option<String>,
}

/// The sink's routing and `'format'` (JSON only), checked against the table.
pub(crate) fn routing(table: &TableDef, options: &MqttOptions) -> Result<Routing, String> {
    if let Some(f) = table
        .option("format")
        .filter(|f| !f.eq_ignore_ascii_case("json"))
    {
        return Err(format!(
            "option 'format': the mqtt sink writes 'json', not '{f}'"
        ));
    }
    let column = table.option("sink.topic-column").map(str::to_string);
    if let Some(c) = &column {
        let ok = table
            .schema()
            .field_with_name(c)
            .is_ok_and(|f| matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8));
        if !ok {
            return Err(format!(
                "option 'sink.topic-column' must name a STRING column of the table, not '{c}'"
            ));
        }
    }
    let topic = match options.topics.is_empty() {
        true => None,
        false => Some(sink_topic(&options.topics)?.to_string()),
    };
    Ok(Routing { topic, column })
}

/// The topic of each row: its column's value, else the fixed topic.
pub(crate) fn row_topics(routing: &Routing, batch: &RecordBatch) -> Result<Vec<String>, String> {
    let Some(name) = &routing.column else {
        let t = routing.topic.clone().unwrap_or_default();
        return Ok(vec![t; batch.num_rows()]);
    };
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| format!("option 'sink.topic-column': no column '{name}'"))?;
    let col = cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
    let col = col
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("option 'sink.topic-column': not a string column")?;
    (0..col.len())
        .map(|i| match (col.is_valid(i), &routing.topic) {
            (true, _) if !col.value(i).is_empty() => {
                sink_topic(&[col.value(i).to_string()]).map(str::to_string)
            }
            (_, Some(t)) => Ok(t.clone()),
            (_, None) => Err(format!(
                "option 'sink.topic-column': column '{name}' is NULL or empty in a row and \
                 no 'topic' is set"
            )),
        })
        .collect()
}

/// Creates `mqtt` sinks.
#[derive(Debug, Default, Clone, Copy)]
pub struct MqttSinkFactory;

impl SinkFactory for MqttSinkFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, table: &TableDef) -> Result<(), String> {
        let options = MqttOptions::parse(table, "sink")?;
        routing(table, &options)?;
        bool_option(table, "sink.retain", false)?;
        Ok(())
    }

    fn guarantee(&self, _table: &TableDef, _checkpointing: bool) -> &'static str {
        "at-least-once"
    }

    fn create(&self, ctx: SinkContext) -> Result<Box<dyn Sink>> {
        let err = |m: String| EngineError::connector(NAME, m);
        let options = MqttOptions::parse(&ctx.table, "sink").map_err(err)?;
        let routing = routing(&ctx.table, &options).map_err(err)?;
        let retain = bool_option(&ctx.table, "sink.retain", false).map_err(err)?;
        let tz = session_time_zone(&ctx.settings).map_err(err)?;
        let (client, eventloop) = connect(&options, false);
        let (status_tx, status) = watch::channel(Delivery::default());
        let task = spawn_sink_loop(eventloop, options.client_id.clone(), status_tx);
        Ok(Box::new(MqttSink {
            client,
            task,
            status,
            qos: qos(options.qos),
            retain,
            routing,
            tz,
            sent: 0,
            metrics: ctx.metrics.clone(),
        }))
    }
}

struct MqttSink {
    client: AsyncClient,
    task: JoinHandle<()>,
    /// The broker's acknowledgements so far.
    status: watch::Receiver<Delivery>,
    qos: QoS,
    retain: bool,
    routing: Routing,
    tz: Option<chrono_tz::Tz>,
    /// Messages published that the broker acknowledges (QoS 1 and 2).
    sent: u64,
    metrics: std::sync::Arc<JobMetrics>,
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sink_err(m: impl std::fmt::Display) -> EngineError {
    EngineError::connector(NAME, m.to_string())
}

impl MqttSink {
    async fn publish(&mut self, batch: RecordBatch) -> Result<()> {
        let topics = row_topics(&self.routing, &batch).map_err(sink_err)?;
        let payloads = lines(&batch, Format::Json, self.tz)?;
        for (topic, payload) in topics.into_iter().zip(payloads) {
            self.client
                .publish(topic, self.qos, self.retain, payload)
                .await
                .map_err(sink_err)?;
            if self.qos != QoS::AtMostOnce {
                self.sent += 1;
            }
        }
        JobMetrics::add(&self.metrics.rows_out, batch.num_rows());
        Ok(())
    }

    /// Wait until the broker acknowledged every message published so far.
    async fn delivered(&mut self) -> Result<()> {
        let sent = self.sent;
        let wait = self
            .status
            .wait_for(|d| d.acked >= sent || d.failed.is_some());
        let failed = match tokio::time::timeout(DELIVERY_TIMEOUT, wait).await {
            Err(_) => None,
            Ok(Err(_)) => return Err(sink_err("the client's event loop stopped")),
            Ok(Ok(d)) => Some(d.failed.clone()),
        };
        match failed {
            None => {
                let acked = self.status.borrow().acked;
                Err(sink_err(format!(
                    "the broker acknowledged {acked} of {sent} messages within \
                     {DELIVERY_TIMEOUT:?}"
                )))
            }
            Some(Some(m)) => Err(sink_err(m)),
            Some(None) => Ok(()),
        }
    }
}

impl Sink for MqttSink {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.publish(batch))
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.delivered())
    }

    fn pre_commit(&mut self, _checkpoint: u64) -> BoxFuture<'_, Result<String>> {
        Box::pin(async { self.delivered().await.map(|()| String::new()) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(topics: Vec<Option<&str>>) -> RecordBatch {
        let n = topics.len() as i64;
        let schema = Schema::new(vec![
            Field::new("t", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(topics)),
                Arc::new(Int64Array::from_iter_values(0..n)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_go_to_their_column_topic_else_the_fixed_one() {
        let r = Routing {
            topic: Some("fallback".into()),
            column: Some("t".into()),
        };
        let b = batch(vec![Some("a/1"), None, Some("")]);
        assert_eq!(row_topics(&r, &b).unwrap(), ["a/1", "fallback", "fallback"]);
        let fixed = Routing {
            topic: Some("x".into()),
            column: None,
        };
        assert_eq!(row_topics(&fixed, &b).unwrap(), ["x", "x", "x"]);
    }

    #[test]
    fn a_row_without_a_topic_or_with_a_wildcard_is_an_error() {
        let r = Routing {
            topic: None,
            column: Some("t".into()),
        };
        assert_eq!(
            row_topics(&r, &batch(vec![None])).unwrap_err(),
            "option 'sink.topic-column': column 't' is NULL or empty in a row and no 'topic' \
             is set"
        );
        assert_eq!(
            row_topics(&r, &batch(vec![Some("a/#")])).unwrap_err(),
            "option 'topic': an mqtt sink cannot write to the wildcard topic 'a/#'"
        );
    }
}
