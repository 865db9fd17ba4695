//! Connection settings from a JDBC or libpq URL, and a small pool of connections that
//! reconnects a connection the server dropped.
//!
//! `jdbc:postgresql://host:5432/db?user=u&password=p` and `postgres://u:p@host:5432/db` both
//! read; `'username'` and `'password'` override what the URL says. A password never appears
//! in an error: URLs are shown with it masked ([`mask_url`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, NoTls};
use weir_engine::{EngineError, Result};

use super::tls::{connector, TlsMode};
use super::NAME;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    config: Config,
    /// `host:port/database`, for messages.
    pub shown: String,
    /// How long to keep trying to (re)connect (`'connection.max-retry-timeout'`).
    pub retry_timeout: Duration,
    /// `sslmode` (libpq's default, `prefer`, when the URL has none).
    pub tls: TlsMode,
    /// `sslrootcert`: the CA file the server's certificate must chain to.
    pub root_cert: Option<String>,
}

impl ConnectSpec {
    /// Parse `url` (JDBC or libpq URL form) with the `'username'` / `'password'` options;
    /// `table` names the application (`weir/<table>` in `pg_stat_activity`).
    pub fn parse(
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        table: &str,
    ) -> Result<Self, String> {
        let bad = |why: &str| format!("option 'url' = '{}': {why}", mask_url(url));
        let rest = url.trim().strip_prefix("jdbc:").unwrap_or(url.trim());
        let rest = rest
            .strip_prefix("postgresql://")
            .or_else(|| rest.strip_prefix("postgres://"))
            .ok_or_else(|| bad("expected jdbc:postgresql://host:port/database or postgres://user@host:port/database"))?;
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut config: Config = format!("postgresql://{base}")
            .parse()
            .map_err(|e| bad(&format!("{e}")))?;
        let mut tls = Tls {
            mode: TlsMode::Prefer,
            root_cert: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            apply_param(&mut config, &mut tls, k, v).map_err(|e| bad(&e))?;
        }
        config.ssl_mode(tls.mode.ssl_mode());
        if let Some(u) = username {
            config.user(u);
        }
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_user().is_none() {
            config.user("postgres");
        }
        if config.get_dbname().is_none() {
            return Err(bad("the URL names no database (…:5432/database)"));
        }
        config.application_name(format!("weir/{table}"));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let shown = shown(&config);
        Ok(Self {
            config,
            shown,
            retry_timeout: Duration::from_secs(60),
            tls: tls.mode,
            root_cert: tls.root_cert,
        })
    }

    /// Open one connection (TLS as `sslmode` says); its driver runs on a spawned task until
    /// the connection ends.
    pub async fn connect(&self) -> Result<Client> {
        let failed = |e: tokio_postgres::Error| {
            EngineError::connector(
                NAME,
                format!("cannot connect to {}: {}", self.shown, chain(&e)),
            )
        };
        if self.tls == TlsMode::Disable {
            let (client, conn) = self.config.connect(NoTls).await.map_err(failed)?;
            self.drive(conn);
            return Ok(client);
        }
        let tls = connector(self.tls, self.root_cert.as_deref())
            .map_err(|e| EngineError::connector(NAME, e))?;
        let (client, conn) = self.config.connect(tls).await.map_err(failed)?;
        self.drive(conn);
        Ok(client)
    }

    /// Run a connection's driver until the connection ends.
    fn drive<F>(&self, conn: F)
    where
        F: std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>
            + Send
            + 'static,
    {
        let shown = self.shown.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(target: "weir::jdbc", "connection to {shown} ended: {e}");
            }
        });
    }

    /// [`ConnectSpec::connect`], retried with a growing pause for up to `retry_timeout` (a
    /// database that restarts comes back within it).
    pub async fn connect_retrying(&self) -> Result<Client> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            match self.connect().await {
                Ok(c) => return Ok(c),
                Err(e) if started.elapsed() >= self.retry_timeout => return Err(e),
                // An untrusted certificate stays untrusted: no use retrying.
                Err(e) if e.to_string().contains("TLS handshake") => return Err(e),
                Err(e) => {
                    tracing::warn!(target: "weir::jdbc", "{e}; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// An error with its causes: `error performing TLS handshake: invalid peer certificate: …`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// `sslmode` and `sslrootcert` from the URL.
struct Tls {
    mode: TlsMode,
    root_cert: Option<String>,
}

fn apply_param(config: &mut Config, tls: &mut Tls, key: &str, value: &str) -> Result<(), String> {
    match key {
        "user" => config.user(value),
        "password" => config.password(value),
        "ApplicationName" | "application_name" => config.application_name(value),
        "connectTimeout" | "connect_timeout" => {
            let s: u64 = value
                .parse()
                .map_err(|_| format!("connectTimeout must be seconds, not '{value}'"))?;
            config.connect_timeout(Duration::from_secs(s))
        }
        "currentSchema" => config.options(format!("-c search_path={value}")),
        "sslmode" => {
            tls.mode = TlsMode::parse(value)?;
            config
        }
        // The JDBC driver's `ssl=true` checks the certificate fully.
        "ssl" if value == "true" => {
            tls.mode = TlsMode::VerifyFull;
            config
        }
        "sslrootcert" => {
            tls.root_cert = Some(value.to_string());
            config
        }
        other => return Err(format!("unknown URL parameter '{other}'")),
    };
    Ok(())
}

fn shown(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// `url` with its password masked (the engine's masking, which DESCRIBE uses too).
pub fn mask_url(url: &str) -> String {
    weir_engine::session::admin::mask_url(url)
}

/// A few connections used in turn; one the server closed (a restart, a terminated backend)
/// is replaced on its next use.
pub struct Connections {
    spec: ConnectSpec,
    slots: Vec<Option<Arc<Client>>>,
    next: usize,
}

impl Connections {
    /// Up to `size` connections (at least one), opened when first used.
    pub fn new(spec: ConnectSpec, size: usize) -> Self {
        Self {
            spec,
            slots: vec![None; size.max(1)],
            next: 0,
        }
    }

    /// What the connections go to.
    pub fn spec(&self) -> &ConnectSpec {
        &self.spec
    }

    /// The next connection, reconnecting it if it was closed.
    pub async fn get(&mut self) -> Result<Arc<Client>> {
        let i = self.next % self.slots.len();
        self.next = self.next.wrapping_add(1);
        if let Some(c) = &self.slots[i] {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(self.spec.connect_retrying().await?);
        self.slots[i] = Some(c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_and_libpq_urls_read_with_the_options_overriding() {
        let s = ConnectSpec::parse(
            "jdbc:postgresql://127.0.0.1:5432/test?user=a&password=b",
            None,
            None,
            "t",
        )
        .unwrap();
        assert_eq!(s.shown, "127.0.0.1:5432/test");
        assert_eq!(s.config.get_user(), Some("a"));
        let s = ConnectSpec::parse("postgres://u:p@db.local/plant", Some("me"), Some("pw"), "t")
            .unwrap();
        assert_eq!(s.shown, "db.local:5432/plant");
        assert_eq!(s.config.get_user(), Some("me"));
        assert_eq!(s.config.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn bad_urls_are_named_without_their_password() {
        let err = ConnectSpec::parse("jdbc:mysql://u:secret@h/db", None, None, "t").unwrap_err();
        assert!(
            err.contains("u:******@h") && !err.contains("secret"),
            "{err}"
        );
        let err = ConnectSpec::parse("postgres://h:5432", None, None, "t").unwrap_err();
        assert!(err.contains("names no database"), "{err}");
        let err = ConnectSpec::parse(
            "jdbc:postgresql://h/db?password=secret&x=1",
            None,
            None,
            "t",
        )
        .unwrap_err();
        assert!(
            err.contains("unknown URL parameter 'x'") && !err.contains("secret"),
            "{err}"
        );
        let err =
            ConnectSpec::parse("postgres://h/db?sslmode=sometimes", None, None, "t").unwrap_err();
        assert!(err.contains("sslmode=sometimes: expected disable"), "{err}");
        let url = "postgres://h/db?sslmode=verify-ca&sslrootcert=/ca.pem";
        let s = ConnectSpec::parse(url, None, None, "t").unwrap();
        assert_eq!(
            (s.tls, s.root_cert.as_deref()),
            (TlsMode::VerifyCa, Some("/ca.pem"))
        );
        let s = ConnectSpec::parse("postgres://h/db", None, None, "t").unwrap();
        assert_eq!(s.tls, TlsMode::Prefer, "libpq's default");
    }

    #[test]
    fn urls_are_masked() {
        assert_eq!(mask_url("postgres://u:p@h/db"), "postgres://u:******@h/db");
        assert_eq!(mask_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            mask_url("jdbc:postgresql://h/db?user=u&password=x&a=b"),
            "jdbc:postgresql://h/db?user=u&password=******&a=b"
        );
    }
}
