//! The `mqtt` connector's `WITH` options, parsed into [`MqttOptions`] at planning time: the
//! broker URL, topics (with wildcards for a source), QoS, client id, credentials, session and
//! inflight settings, the payload format and the bad-record handling shared with Kafka.

use weir_engine::connector::{check_known_options, required_option};
use weir_engine::observe::dead_letter::OnError;
use weir_planner::TableDef;

use crate::filesystem::{CsvOptions, Format};
use crate::options::{bool_option, char_option, number_option};

/// The connector name in `'connector' = 'mqtt'`.
pub const NAME: &str = "mqtt";

/// Every option the connector knows (source and sink).
pub(crate) const KNOWN: &[&str] = &[
    "connector",
    "url",
    "topic",
    "qos",
    "client-id",
    "username",
    "password",
    "clean-session",
    "max-inflight",
    "format",
    "format.on-error",
    "dead-letter.topic",
    "csv.field-delimiter",
    "csv.quote-character",
    "json.timestamp-format.standard",
    "json.ignore-parse-errors",
    "timestamp.unit",
    "timestamp.max-future",
    "timestamp.min",
    "scan.watermark.idle-timeout",
    "sink.topic-column",
    "sink.retain",
    "ssl.ca-file",
    "ssl.cert-file",
    "ssl.key-file",
];

/// The CA bundle of the system (Debian's), trusted when `'ssl.ca-file'` is not given.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The default of `'max-inflight'`: the most unacknowledged messages MQTT allows (one per
/// packet identifier), so acknowledgements held until a checkpoint do not throttle the input.
pub(crate) const DEFAULT_MAX_INFLIGHT: u16 = u16::MAX;

/// Where the broker listens (`'url'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broker {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `ssl://`, `mqtts://` or `tls://`: the connection is TLS.
    pub(crate) tls: bool,
}

/// What a TLS connection trusts and, for client authentication, presents (PEM files read
/// when the table is planned, so a missing file is a planning error).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// The CA certificates the broker's certificate must chain to.
    pub(crate) ca: Vec<u8>,
    /// The client certificate and its key (`'ssl.cert-file'`, `'ssl.key-file'`).
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TlsFiles {{ ca: {} bytes, client: {} }}",
            self.ca.len(),
            self.client.is_some()
        )
    }
}

impl TlsFiles {
    /// The TLS settings of `table`, `None` for a plain connection (where `ssl.*` options are
    /// refused).
    fn parse(table: &TableDef, broker: &Broker) -> Result<Option<TlsFiles>, String> {
        let keys = ["ssl.ca-file", "ssl.cert-file", "ssl.key-file"];
        if !broker.tls {
            return match keys.iter().find(|k| table.option(k).is_some()) {
                Some(k) => Err(format!("option '{k}' needs a TLS 'url' (ssl://host:8883)")),
                None => Ok(None),
            };
        }
        let read = |key: &str, path: &str| {
            std::fs::read(path).map_err(|e| format!("option '{key}': cannot read '{path}': {e}"))
        };
        let ca = match table.option("ssl.ca-file") {
            Some(path) => read("ssl.ca-file", path)?,
            None => read("ssl.ca-file", SYSTEM_CA_BUNDLE).map_err(|e| {
                format!("{e} (the system's CA bundle; name the broker's CA with 'ssl.ca-file')")
            })?,
        };
        let client = match (table.option("ssl.cert-file"), table.option("ssl.key-file")) {
            (Some(c), Some(k)) => Some((read("ssl.cert-file", c)?, read("ssl.key-file", k)?)),
            (None, None) => None,
            _ => return Err("options 'ssl.cert-file' and 'ssl.key-file' go together".into()),
        };
        Ok(Some(TlsFiles { ca, client }))
    }
}

/// A password that never shows in logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `'username'` and `'password'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: Secret,
}

/// The payload format of a source table.
#[derive(Debug, Clone)]
pub(crate) struct PayloadFormat {
    pub(crate) format: Format,
    /// `'format' = 'raw'`: the whole payload is the table's one STRING or BYTES column.
    pub(crate) raw: bool,
    pub(crate) csv: CsvOptions,
}

/// What source and sink share.
#[derive(Debug, Clone)]
pub(crate) struct MqttOptions {
    pub(crate) broker: Broker,
    pub(crate) topics: Vec<String>,
    pub(crate) qos: u8,
    pub(crate) client_id: String,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) clean_session: bool,
    pub(crate) max_inflight: u16,
    /// Set for a TLS `url`.
    pub(crate) tls: Option<TlsFiles>,
}

impl MqttOptions {
    /// The options of `table`; `role` ("source" or "sink") picks the default client id.
    pub(crate) fn parse(table: &TableDef, role: &str) -> Result<MqttOptions, String> {
        check_known_options(table, KNOWN, &[])?;
        let broker = parse_url(required_option(table, "url")?)?;
        let routed = role == "sink" && table.option("sink.topic-column").is_some();
        let topics = match table.option("topic") {
            None if routed => Vec::new(),
            _ => parse_topics(required_option(table, "topic")?)?,
        };
        let qos = parse_qos(table.option("qos"))?;
        let client_id = match table.option("client-id") {
            Some(id) if id.trim().is_empty() => {
                return Err("option 'client-id' must not be empty".into())
            }
            Some(id) => id.to_string(),
            None => default_client_id(&table.name, role),
        };
        let credentials = match (table.option("username"), table.option("password")) {
            (Some(u), p) => Some(Credentials {
                username: u.to_string(),
                password: Secret(p.unwrap_or_default().to_string()),
            }),
            (None, Some(_)) => return Err("option 'password' needs the option 'username'".into()),
            (None, None) => None,
        };
        let max_inflight = match number_option::<u32>(table, "max-inflight")? {
            None => DEFAULT_MAX_INFLIGHT,
            Some(n) if (1..=u32::from(u16::MAX)).contains(&n) => n as u16,
            Some(n) => {
                return Err(format!(
                    "option 'max-inflight' must be between 1 and 65535, not {n}"
                ))
            }
        };
        let tls = TlsFiles::parse(table, &broker)?;
        Ok(MqttOptions {
            tls,
            broker,
            topics,
            qos,
            client_id,
            credentials,
            clean_session: bool_option(table, "clean-session", false)?,
            max_inflight,
        })
    }
}

/// `weir-<table>` for a source, `weir-<table>-sink` for a sink: stable across restarts, so a
/// restarted job finds its persistent session again.
pub(crate) fn default_client_id(table: &str, role: &str) -> String {
    match role {
        "sink" => format!("weir-{table}-sink"),
        _ => format!("weir-{table}"),
    }
}

/// `tcp://host:port` or `mqtt://host:port` (port 1883 when left out); `ssl://`, `mqtts://`
/// or `tls://` for TLS (port 8883 when left out).
pub(crate) fn parse_url(url: &str) -> Result<Broker, String> {
    let bad = || {
        format!(
            "option 'url' must look like 'tcp://host:1883' (or 'mqtt://host:1883', or \
             'ssl://host:8883' for TLS), not '{url}'"
        )
    };
    let (scheme, rest) = url.trim().split_once("://").ok_or_else(bad)?;
    let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "mqtt" => (false, 1883),
        "ssl" | "mqtts" | "tls" => (true, 8883),
        _ => return Err(bad()),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ']) || port == 0 {
        return Err(bad());
    }
    Ok(Broker {
        host: host.to_string(),
        port,
        tls,
    })
}

/// `'qos'`: 0, 1 or 2 (1 when unset).
pub(crate) fn parse_qos(value: Option<&str>) -> Result<u8, String> {
    match value.map(str::trim) {
        None => Ok(1),
        Some("0") => Ok(0),
        Some("1") => Ok(1),
        Some("2") => Ok(2),
        Some(other) => Err(format!("option 'qos' must be 0, 1 or 2, not '{other}'")),
    }
}

/// A comma-separated list of topic filters (`+` and `#` wildcards allowed).
pub(crate) fn parse_topics(value: &str) -> Result<Vec<String>, String> {
    let topics: Vec<String> = value
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.is_empty() {
        return Err("option 'topic' must name at least one topic".into());
    }
    for t in &topics {
        check_filter(t)?;
    }
    Ok(topics)
}

/// MQTT's rules for a topic filter: `+` is a whole level, `#` a whole last level.
fn check_filter(filter: &str) -> Result<(), String> {
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        let ok = !wild || *level == "+" || (*level == "#" && i == levels.len() - 1);
        if !ok {
            return Err(format!(
                "option 'topic': '{filter}' is not a valid MQTT topic filter \
                 ('+' must be a whole level, '#' the whole last level)"
            ));
        }
    }
    Ok(())
}

/// The one topic a sink writes to, without wildcards.
pub(crate) fn sink_topic(topics: &[String]) -> Result<&str, String> {
    let [topic] = topics else {
        return Err(format!(
            "option 'topic': an mqtt sink writes to one topic, and '{}' names {}",
            topics.join(","),
            topics.len()
        ));
    };
    if topic.contains(['+', '#']) {
        return Err(format!(
            "option 'topic': an mqtt sink cannot write to the wildcard topic '{topic}'"
        ));
    }
    Ok(topic)
}

/// The payload format of a source: `'format'` json, csv or raw, and the CSV options.
pub(crate) fn payload_format(table: &TableDef) -> Result<PayloadFormat, String> {
    let name = required_option(table, "format")?.to_ascii_lowercase();
    let format = match name.as_str() {
        "json" | "raw" => Format::Json,
        "csv" => Format::Csv,
        other => {
            return Err(format!(
                "option 'format' must be 'json', 'csv' or 'raw' for mqtt, not '{other}'"
            ))
        }
    };
    let raw = name == "raw";
    if raw {
        check_raw(table)?;
    }
    let csv = CsvOptions {
        delimiter: char_option(table, "csv.field-delimiter", b',')?,
        quote: char_option(table, "csv.quote-character", b'"')?,
        allow_comments: false,
        ignore_first_line: false,
    };
    Ok(PayloadFormat { format, raw, csv })
}

/// The raw format needs exactly one physical column of type STRING or BYTES.
fn check_raw(table: &TableDef) -> Result<(), String> {
    use datafusion::arrow::datatypes::DataType;
    let schema = table.physical_schema();
    let fields = schema.fields();
    let ok =
        fields.len() == 1 && matches!(fields[0].data_type(), DataType::Utf8 | DataType::Binary);
    if ok {
        Ok(())
    } else {
        Err("'format' = 'raw' needs exactly one physical column of type STRING or BYTES".into())
    }
}

/// `'format.on-error'` with `'dead-letter.topic'` (dead letters by default when it is set).
pub(crate) fn on_error(table: &TableDef) -> Result<OnError, String> {
    let has_topic = table.option("dead-letter.topic").is_some();
    let mut on_error = OnError::parse_with_default(table.option("format.on-error"), has_topic)?;
    if on_error == OnError::DeadLetter && !has_topic {
        return Err("'format.on-error' = 'dead-letter' needs a 'dead-letter.topic'".into());
    }
    if let Some(t) = table.option("dead-letter.topic") {
        if t.trim().is_empty() || t.contains(['+', '#', ',']) {
            return Err(format!(
                "option 'dead-letter.topic' must be one topic without wildcards, not '{t}'"
            ));
        }
    }
    if bool_option(table, "json.ignore-parse-errors", false)? {
        on_error = OnError::Skip;
    }
    Ok(on_error)
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
