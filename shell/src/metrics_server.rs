//! `weir run --metrics-addr 127.0.0.1:9464`: a small HTTP endpoint with `/metrics` (the
//! Prometheus text format, from [`weir::Engine::metrics_text`]) and `/health` (200, or 503 with
//! a JSON reason when a job failed or a checkpointing job has not completed a checkpoint within
//! the allowed age). One request per connection; nothing else is served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Bind `addr` (so a taken port is reported at once) and serve on a thread of its own, off the
/// pipeline's runtime.
pub async fn serve(
    addr: SocketAddr,
    engine: weir::Engine,
    max_age: Duration,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        eprintln!("weir: warning: metrics are served on {bound}, reachable beyond this machine");
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

fn answer(mut stream: TcpStream, engine: &weir::Engine, max_age: Duration) -> std::io::Result<()> {
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
            "text/plain; version=0.0.4; charset=utf-8",
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
