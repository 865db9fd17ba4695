//! The metrics endpoint (`weir run --metrics-addr 127.0.0.1:9464`, or [`serve`] from an
//! embedding program): `/metrics` in the OpenMetrics text format that Prometheus scrapes (from
//! [`weir_engine::Engine::metrics_text`]) and `/health` (200, or 503 with a JSON reason when a
//! job failed or a checkpointing job has not completed a checkpoint within the allowed age).
//! One request per connection, on a thread of its own, off the pipeline's runtime; nothing else
//! is served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Bind `addr` (so a taken port is reported at once) and serve `engine`'s metrics and health
/// on a thread of its own; returns the bound address (port 0 picks a free one). `max_age` is the
/// oldest a checkpointing job's last checkpoint may be for `/health` to answer 200. Bind to
/// loopback unless the endpoint is meant to be reachable from elsewhere.
pub fn serve(
    addr: SocketAddr,
    engine: crate::Engine,
    max_age: Duration,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!("metrics are served on {bound}, reachable beyond this machine");
    }
    std::thread::Builder::new()
        .name("weir-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &engine, max_age);
            }
        })?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, engine: &crate::Engine, max_age: Duration) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while n < buf.len() {
        let read = stream.read(&mut buf[n..])?;
        if read == 0 {
            break;
        }
        n += read;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, kind, body) = match path {
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            engine.metrics_text(),
        ),
        "/health" => match engine.health(max_age) {
            Ok(()) => (
                "200 OK",
                "application/json",
                r#"{"status":"ok"}"#.to_string(),
            ),
            Err(reason) => ("503 Service Unavailable", "application/json", reason),
        },
        _ => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
