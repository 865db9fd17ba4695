//! Log lines on stderr through `tracing`: the engine and connectors log with levels (a skipped
//! bad record, a retried broker connection and a crossed monitoring threshold are warnings; a
//! restored checkpoint is info; completed checkpoints are debug). `RUST_LOG` chooses what shows,
//! as `level` or `target=level` directives (`RUST_LOG=debug`,
//! `RUST_LOG=warn,weir_engine::checkpoint=debug`); the default is `info`, and `--quiet` makes it
//! `warn`. Results never go to stderr, so logs and results pipe apart.

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter: `RUST_LOG` when set and valid, else `info` (`warn` when quiet).
pub fn filter(rust_log: Option<&str>, quiet: bool) -> Targets {
    let default = if quiet {
        LevelFilter::WARN
    } else {
        LevelFilter::INFO
    };
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(spec) => Targets::from_str(spec).unwrap_or_else(|e| {
            eprintln!("weir: ignoring RUST_LOG='{spec}': {e}");
            Targets::new().with_default(default)
        }),
        None => Targets::new().with_default(default),
    }
}

/// Install the stderr logger for this process (once; later calls do nothing).
pub fn init(quiet: bool) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), quiet);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_directives_and_defaults() {
        let f = filter(None, false);
        assert!(f.would_enable("weir_engine", &Level::INFO));
        assert!(!f.would_enable("weir_engine", &Level::DEBUG));
        let f = filter(None, true);
        assert!(!f.would_enable("weir_engine", &Level::INFO));
        let f = filter(Some("warn,weir_engine::checkpoint=debug"), false);
        assert!(f.would_enable("weir_engine::checkpoint::coordinator", &Level::DEBUG));
        assert!(!f.would_enable("weir_engine::runtime", &Level::INFO));
    }
}
