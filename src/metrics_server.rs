//! The metrics endpoint (`weir run --metrics-addr 127.0.0.1:9464`, or [`serve`] from an
//! embedding program): `/metrics` in the OpenMetrics text format that Prometheus scrapes (from
//! [`weir_engine::Engine::metrics_text`]) and `/health` (200, or 503 with a JSON reason; see
//! [`weir_engine::Engine::health`]). Nothing else is served.
//!
//! hyper serves HTTP/1.1 on a small runtime of its own thread, so a pipeline that keeps the
//! engine's runtime busy never delays a health check. Every connection is a task of its own:
//! requests are answered concurrently, a client must send its request headers within
//! [`Timeouts::header_read`], and no connection stays open longer than
//! [`Timeouts::connection`], so a slow or silent client holds nothing but its own socket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// How long the endpoint waits on its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest time a client may take to send a request's headers (slowloris).
    pub header_read: Duration,
    /// Longest time one connection stays open, requests and keep-alive included.
    pub connection: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(5),
            connection: Duration::from_secs(30),
        }
    }
}

/// What a connection needs to answer its requests.
#[derive(Clone)]
struct Endpoint {
    engine: crate::Engine,
    max_age: Duration,
    timeouts: Timeouts,
}

/// Bind `addr` (so a taken port is reported at once) and serve `engine`'s metrics and health
/// on a thread of its own; returns the bound address (port 0 picks a free one). `max_age` is the
/// oldest a checkpointing job's last checkpoint may be for `/health` to answer 200. Bind to
/// loopback unless the endpoint is meant to be reachable from elsewhere.
pub fn serve(
    addr: SocketAddr,
    engine: crate::Engine,
    max_age: Duration,
) -> std::io::Result<SocketAddr> {
    serve_with(addr, engine, max_age, Timeouts::default())
}

/// [`serve`] with other [`Timeouts`] than the defaults (5 s for headers, 30 s a connection).
pub fn serve_with(
    addr: SocketAddr,
    engine: crate::Engine,
    max_age: Duration,
    timeouts: Timeouts,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!("metrics are served on {bound}, reachable beyond this machine");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = Endpoint {
        engine,
        max_age,
        timeouts,
    };
    std::thread::Builder::new()
        .name("weir-metrics".into())
        .spawn(move || runtime.block_on(accept(listener, endpoint)))?;
    Ok(bound)
}

/// Accept connections for ever, each served by a task of its own.
async fn accept(listener: std::net::TcpListener, endpoint: Endpoint) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics endpoint: {e}");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, endpoint.clone()));
            }
            // Out of file descriptors, say: wait a little instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Serve one connection until the client closes it or its time is up.
async fn connection(stream: tokio::net::TcpStream, endpoint: Endpoint) {
    let limit = endpoint.timeouts.connection;
    let header_read = endpoint.timeouts.header_read;
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let response = endpoint.respond(req.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    if tokio::time::timeout(limit, conn.as_mut()).await.is_err() {
        // Finish a response in flight, then close.
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
    }
}

impl Endpoint {
    /// The response to a GET of `path`.
    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, kind, body) = match path {
            "/metrics" => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.engine.metrics_text(),
            ),
            "/health" => match self.engine.health(self.max_age) {
                Ok(()) => (
                    StatusCode::OK,
                    "application/json",
                    r#"{"status":"ok"}"#.to_string(),
                ),
                Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, "application/json", reason),
            },
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "try /metrics or /health\n".to_string(),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
        response
    }
}
