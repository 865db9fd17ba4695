//! Unit tests of the `mqtt` option parsing: every error names the option and the value.

use datafusion::arrow::datatypes::DataType;
use weir_engine::observe::dead_letter::OnError;

use super::*;
use crate::test_util::table;

fn mqtt(extra: &[(&str, &str)]) -> TableDef {
    let mut options = vec![
        ("connector", "mqtt"),
        ("url", "tcp://127.0.0.1:1883"),
        ("topic", "a/b"),
        ("format", "json"),
    ];
    options.extend_from_slice(extra);
    table(&options, &[("v", DataType::Utf8)])
}

fn parse_err(extra: &[(&str, &str)]) -> String {
    MqttOptions::parse(&mqtt(extra), "source").unwrap_err()
}

#[test]
fn defaults_are_a_persistent_qos1_session_named_after_the_table() {
    let o = MqttOptions::parse(&mqtt(&[]), "source").unwrap();
    assert_eq!(
        o.broker,
        Broker {
            host: "127.0.0.1".into(),
            port: 1883,
            tls: false
        }
    );
    assert!(o.tls.is_none());
    assert_eq!((o.qos, o.clean_session, o.max_inflight), (1, false, 65535));
    assert_eq!(o.client_id, "weir-t");
    assert_eq!(o.credentials, None);
    let sink = MqttOptions::parse(&mqtt(&[]), "sink").unwrap();
    assert_eq!(sink.client_id, "weir-t-sink");
}

#[test]
fn urls_take_tcp_and_mqtt_and_tls_with_its_files() {
    assert_eq!(
        parse_url("mqtt://broker").unwrap(),
        Broker {
            host: "broker".into(),
            port: 1883,
            tls: false
        }
    );
    assert_eq!(parse_url("tcp://[::1]:1884").unwrap().port, 1884);
    let tls = parse_url("mqtts://broker").unwrap();
    assert_eq!((tls.port, tls.tls), (8883, true));
    assert!(parse_url("ssl://broker:8884").unwrap().tls);
    assert_eq!(
        parse_err(&[("url", "ssl://broker:8883"), ("ssl.ca-file", "/no/such/ca.pem")]),
        "option 'ssl.ca-file': cannot read '/no/such/ca.pem': No such file or directory (os error 2)"
    );
    assert_eq!(
        parse_err(&[("ssl.ca-file", "/etc/hostname")]),
        "option 'ssl.ca-file' needs a TLS 'url' (ssl://host:8883)"
    );
    assert_eq!(
        parse_err(&[
            ("url", "ssl://broker"),
            ("ssl.ca-file", "/etc/hostname"),
            ("ssl.cert-file", "/etc/hostname")
        ]),
        "options 'ssl.cert-file' and 'ssl.key-file' go together"
    );
    assert_eq!(
        parse_err(&[("url", "http://broker:1883")]),
        "option 'url' must look like 'tcp://host:1883' (or 'mqtt://host:1883', or \
         'ssl://host:8883' for TLS), not 'http://broker:1883'"
    );
    for bad in [
        "broker:1883",
        "tcp://:1883",
        "tcp://h:99999",
        "tcp://h:0",
        "tcp://h:x",
    ] {
        assert!(parse_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn qos_must_be_0_1_or_2() {
    assert_eq!(
        parse_err(&[("qos", "3")]),
        "option 'qos' must be 0, 1 or 2, not '3'"
    );
    assert_eq!(parse_qos(Some("0")), Ok(0));
    assert_eq!(parse_qos(Some(" 2 ")), Ok(2));
}

#[test]
fn unknown_options_are_named_with_the_known_ones() {
    let e = parse_err(&[("qos.level", "1")]);
    assert!(
        e.starts_with("unknown option 'qos.level' for connector 'mqtt'; supported options: "),
        "{e}"
    );
    assert!(e.contains("'max-inflight'"), "{e}");
}

#[test]
fn topics_are_comma_separated_filters_with_wildcards() {
    assert_eq!(
        parse_topics("sensors/+/temp, plant/#").unwrap(),
        vec!["sensors/+/temp", "plant/#"]
    );
    assert_eq!(
        parse_topics("a/#/b").unwrap_err(),
        "option 'topic': 'a/#/b' is not a valid MQTT topic filter ('+' must be a whole level, \
         '#' the whole last level)"
    );
    assert!(parse_topics("a/b+").is_err());
    assert_eq!(
        parse_topics(" , ").unwrap_err(),
        "option 'topic' must name at least one topic"
    );
    assert_eq!(
        sink_topic(&["a/+".into()]).unwrap_err(),
        "option 'topic': an mqtt sink cannot write to the wildcard topic 'a/+'"
    );
    assert_eq!(
        sink_topic(&["a".into(), "b".into()]).unwrap_err(),
        "option 'topic': an mqtt sink writes to one topic, and 'a,b' names 2"
    );
}

#[test]
fn other_option_errors_name_the_option() {
    assert_eq!(
        parse_err(&[("max-inflight", "0")]),
        "option 'max-inflight' must be between 1 and 65535, not 0"
    );
    assert_eq!(
        parse_err(&[("clean-session", "yes")]),
        "option 'clean-session' must be 'true' or 'false', not 'yes'"
    );
    assert_eq!(
        parse_err(&[("password", "hunter2")]),
        "option 'password' needs the option 'username'"
    );
    assert_eq!(
        parse_err(&[("client-id", " ")]),
        "option 'client-id' must not be empty"
    );
    let missing = MqttOptions::parse(
        &table(&[("connector", "mqtt"), ("topic", "a")], &[]),
        "source",
    );
    assert_eq!(
        missing.unwrap_err(),
        "connector 'mqtt' needs the option 'url'"
    );
}

#[test]
fn the_password_never_shows() {
    let o = MqttOptions::parse(
        &mqtt(&[("username", "u"), ("password", "hunter2")]),
        "source",
    );
    let shown = format!("{o:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("***"),
        "{shown}"
    );
}

#[test]
fn formats_and_bad_record_handling() {
    assert_eq!(
        payload_format(&mqtt(&[("format", "avro")])).unwrap_err(),
        "option 'format' must be 'json', 'csv' or 'raw' for mqtt, not 'avro'"
    );
    assert!(payload_format(&mqtt(&[("format", "raw")])).unwrap().raw);
    assert_eq!(on_error(&mqtt(&[])), Ok(OnError::Skip));
    assert_eq!(
        on_error(&mqtt(&[("dead-letter.topic", "dlq/x")])),
        Ok(OnError::DeadLetter)
    );
    assert_eq!(
        on_error(&mqtt(&[("format.on-error", "dead-letter")])).unwrap_err(),
        "'format.on-error' = 'dead-letter' needs a 'dead-letter.topic'"
    );
    assert_eq!(
        on_error(&mqtt(&[("dead-letter.topic", "dlq/#")])).unwrap_err(),
        "option 'dead-letter.topic' must be one topic without wildcards, not 'dlq/#'"
    );
}
