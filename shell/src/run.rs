//! `weir run job.sql`: plan every statement, then run them; results on stdout, everything else
//! on stderr. Exit codes: 0 done, 1 runtime failure, 2 planning error.

use weir::planner::Statement;
use weir::Output;

use crate::output::{render_error, session_tz, Format, Printer};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Output format of query rows.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Print nothing but results.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Override a SET option: --set key=value.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Subtasks per keyed operator (as --set parallelism.default=N; default: one per core).
    #[arg(long, short = 'p', value_name = "N")]
    parallelism: Option<usize>,
    /// Checkpoint into DIR (every 10 s unless 'execution.checkpointing.interval' says
    /// otherwise) and resume from the latest checkpoint found there.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<std::path::PathBuf>,
    /// Restore from a checkpoint taken by a different query (only where state still fits).
    #[arg(long)]
    allow_changed_query: bool,
    /// Plan every statement and print the EXPLAIN of each query and INSERT, without running.
    #[arg(long)]
    dry_run: bool,
    /// Serve `/metrics` (Prometheus) and `/health` on this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// `/health` turns 503 when a checkpointing job's last checkpoint is older than this many
    /// seconds.
    #[arg(long, value_name = "SECONDS", default_value = "60")]
    health_max_checkpoint_age: u64,
    /// The job file.
    file: String,
}

pub async fn run(args: RunArgs) -> i32 {
    let sql = match std::fs::read_to_string(&args.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file);
            return 2;
        }
    };
    let (statements, errors) = weir::planner::parse_script_all(&sql);
    if !errors.is_empty() {
        for e in errors {
            eprintln!("{}", render_error(&sql, &weir::EngineError::Plan(e)));
        }
        return 2;
    }
    let plan_errors = plan_all(&statements, &args).await;
    if !plan_errors.is_empty() || args.dry_run {
        for e in &plan_errors {
            eprintln!("{}", render_error(&sql, e));
        }
        return if plan_errors.is_empty() { 0 } else { 2 };
    }
    let engine = match new_engine(&args) {
        Ok(e) => e,
        Err(code) => return code,
    };
    if let Some(addr) = args.metrics_addr {
        let max_age = std::time::Duration::from_secs(args.health_max_checkpoint_age);
        match weir::metrics_server::serve(addr, engine.clone(), max_age) {
            Ok(bound) if !args.quiet => eprintln!("weir: metrics on http://{bound}/metrics"),
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: cannot serve metrics on {addr}: {e}");
                return 2;
            }
        }
    }
    run_statements(&engine, &sql, statements, &args).await
}

/// An engine with the command line's settings: `--set` pins options the file cannot change.
fn new_engine(args: &RunArgs) -> Result<weir::Engine, i32> {
    let engine = weir::Engine::new();
    engine.set_quiet(args.quiet);
    if let Some(dir) = &args.checkpoint_dir {
        engine.set_checkpointing(Some(weir::CheckpointConfig {
            allow_changed_query: args.allow_changed_query,
            ..weir::CheckpointConfig::new(dir)
        }));
    }
    let parallelism = args.parallelism.map(|p| format!("parallelism.default={p}"));
    for kv in args.set.iter().chain(parallelism.iter()) {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("error: --set takes key=value, not '{kv}'");
            return Err(2);
        };
        if let Err(e) = engine.override_option(k.trim(), v.trim()) {
            eprintln!("error: --set {kv}: {e}");
            return Err(2);
        }
    }
    Ok(engine)
}

/// Plan every statement of the file against an engine of its own, before anything runs: DDL
/// and SET change that engine's catalog, queries and INSERTs are only planned (with EXPLAIN,
/// printed for `--dry-run`). Returns every planning error, in file order.
async fn plan_all(statements: &[Statement], args: &RunArgs) -> Vec<weir::EngineError> {
    let Ok(engine) = new_engine(args) else {
        return vec![]; // reported again (and fatal) when the real engine is built
    };
    let mut errors = Vec::new();
    for st in group_inserts(statements.to_vec()) {
        let Some(st) = weir::plan_only(st) else {
            continue;
        };
        match engine.execute_statement(st).await {
            Ok(weir::Output::Text(t)) if args.dry_run => println!("{t}"),
            Ok(weir::Output::Message(m)) if args.dry_run && !args.quiet => eprintln!("{m}"),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    errors
}

async fn run_statements(
    engine: &weir::Engine,
    sql: &str,
    statements: Vec<Statement>,
    args: &RunArgs,
) -> i32 {
    let mut jobs = Vec::new();
    // Created once for the whole run, so no signal falls between two listeners.
    let mut signals = Signals::new();
    for st in group_inserts(statements) {
        let out = match engine.execute_statement(st).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{}", render_error(sql, &e));
                cancel_all(&jobs);
                return if matches!(e, weir::EngineError::Plan(_)) {
                    2
                } else {
                    1
                };
            }
        };
        let mut printer = Printer::new(args.format, session_tz(engine));
        match out {
            Output::Message(m) if !args.quiet => eprintln!("{m}"),
            Output::Message(_) => {}
            Output::Text(t) => println!("{t}"),
            Output::Table(_, batches) => {
                for b in &batches {
                    let _ = printer.print(b);
                }
                printer.finish();
            }
            Output::Stream(mut s) => {
                let progress = crate::progress::spawn(vec![s.job().clone()], args.quiet);
                let drained = drain(&mut s, &mut printer, &mut signals, args.quiet).await;
                crate::progress::stop(progress).await;
                if let Err(code) = drained {
                    cancel_all(&jobs);
                    return code;
                }
            }
            Output::Job(j) => jobs.push(j),
        }
    }
    let progress = crate::progress::spawn(jobs.clone(), args.quiet);
    let waited = wait_jobs(&jobs, &mut signals, args.quiet).await;
    crate::progress::stop(progress).await;
    if let Err(code) = waited {
        return code;
    }
    0
}

/// Wait for the background jobs. SIGTERM or Ctrl-C stops them with a savepoint (a final
/// checkpoint, then exit 0); a second signal exits at once.
async fn wait_jobs(
    jobs: &[weir::JobHandle],
    signals: &mut Signals,
    quiet: bool,
) -> Result<(), i32> {
    let mut stopping = false;
    for j in jobs {
        loop {
            tokio::select! {
                r = j.wait() => {
                    if let Err(e) = r {
                        eprintln!("error: job '{}' failed: {e}", j.name());
                        return Err(1);
                    }
                    break;
                }
                _ = signals.next() => {
                    if stopping {
                        eprintln!("weir: stopped without a savepoint");
                        std::process::exit(130);
                    }
                    stopping = true;
                    if !quiet {
                        eprintln!("weir: stopping with a savepoint (signal again to exit at once)");
                    }
                    jobs.iter().for_each(|j| j.stop_with_savepoint());
                }
            }
        }
        summary(j, quiet);
    }
    Ok(())
}

/// SIGTERM and SIGINT as one stream, listened to from the run's start to its end: a signal
/// that arrives while a batch is being printed waits for the next `next()`.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            #[cfg(unix)]
            term: signal(SignalKind::terminate()).ok(),
            #[cfg(unix)]
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let (Some(t), Some(i)) = (self.term.as_mut(), self.int.as_mut()) {
            tokio::select! {
                _ = t.recv() => return,
                _ = i.recv() => return,
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Consecutive top-level INSERTs of a job file run as one job, like a statement set.
fn group_inserts(statements: Vec<Statement>) -> Vec<Statement> {
    let mut out: Vec<Statement> = Vec::with_capacity(statements.len());
    for st in statements {
        match (out.last_mut(), st) {
            (Some(Statement::StatementSet(set)), ins @ Statement::Insert { .. }) => set.push(ins),
            (Some(prev @ Statement::Insert { .. }), ins @ Statement::Insert { .. }) => {
                let first = std::mem::replace(prev, Statement::StatementSet(vec![]));
                *prev = Statement::StatementSet(vec![first, ins]);
            }
            (_, other) => out.push(other),
        }
    }
    out
}

fn cancel_all(jobs: &[weir::JobHandle]) {
    jobs.iter().for_each(|j| j.cancel());
}

async fn drain(
    s: &mut weir::QueryStream,
    printer: &mut Printer,
    signals: &mut Signals,
    quiet: bool,
) -> Result<(), i32> {
    loop {
        tokio::select! {
            b = s.next_batch() => match b {
                Some(Ok(b)) => {
                    if printer.print(&b).is_err() {
                        return Ok(()); // stdout closed (e.g. piped into head)
                    }
                }
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return Err(1);
                }
                None => break,
            },
            _ = signals.next() => {
                s.job().cancel();
                eprintln!("weir: cancelled");
                return Err(130);
            }
        }
    }
    printer.finish();
    summary(s.job(), quiet);
    Ok(())
}

fn summary(j: &weir::JobHandle, quiet: bool) {
    if quiet {
        return;
    }
    let m = j.metrics();
    eprintln!(
        "weir: {} finished: {} rows in, {} rows out, {} late rows dropped, {} bad records skipped",
        j.name(),
        weir::engine_metrics::get(&m.rows_in),
        weir::engine_metrics::get(&m.rows_out),
        j.late_rows(),
        j.bad_records()
    );
}
