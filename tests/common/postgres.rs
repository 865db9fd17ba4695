//! The PostgreSQL the `jdbc` tests talk to: `WEIR_TEST_POSTGRES` or the local server
//! (`postgres://postgres@127.0.0.1:5432/test`, which the test command starts when missing).
//! Each test makes tables with names of its own and drops them at the end.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio_postgres::{Client, NoTls};

/// The server's URL.
pub fn url() -> String {
    std::env::var("WEIR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A connection for the test's own statements.
pub async fn client() -> Client {
    let (client, conn) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is not reachable: {e}", url()));
    tokio::spawn(conn);
    client
}

/// A table name unique to this process and call.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("weir_{name}_{}_{n}", std::process::id())
}

/// The rows `sql` selects, each as a JSON object, sorted by their text.
pub async fn rows(client: &Client, sql: &str) -> Vec<Value> {
    let wrapped = format!("SELECT row_to_json(q)::text FROM ({sql}) q");
    let mut out: Vec<Value> = client
        .query(&wrapped, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

/// Run statements, panicking with the statement on error.
pub async fn exec(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
