//! The interactive shell: multi-line statements until `;` (with a continuation prompt),
//! persistent history with Ctrl-R search, tab completion and highlighting ([`crate::helper`]),
//! live query results ([`crate::live`]), and Ctrl-C that cancels the running query and keeps the
//! shell. An error never exits the shell.

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::Editor;
use weir::Output;

use crate::helper::{Names, SqlHelper};
use crate::live::{Live, Mode};
use crate::output::{render_error, session_tz, Format, Printer};

fn history_path(custom: Option<String>) -> std::path::PathBuf {
    match custom {
        Some(p) => p.into(),
        None => std::env::var("HOME")
            .map(|h| std::path::Path::new(&h).join(".weir_history"))
            .unwrap_or_else(|_| ".weir_history".into()),
    }
}

pub async fn repl(execute: Option<String>, file: Option<String>, history: Option<String>) -> i32 {
    let engine = weir::Engine::new();
    if let Some(sql) = execute {
        return if run_sql(&engine, &sql).await { 0 } else { 1 };
    }
    if let Some(f) = file {
        match std::fs::read_to_string(&f) {
            Ok(sql) => {
                run_sql(&engine, &sql).await;
            }
            Err(e) => eprintln!("error: cannot read {f}: {e}"),
        }
    }
    let Ok(mut rl) = Editor::<SqlHelper, DefaultHistory>::new() else {
        eprintln!("error: cannot open the terminal");
        return 1;
    };
    rl.set_helper(Some(SqlHelper::default()));
    refresh_names(&engine, &rl);
    let hist = history_path(history);
    let _ = rl.load_history(&hist);
    println!(
        "Weir {} — streaming SQL. End statements with ';'. HELP; for help, Ctrl-D exits.",
        env!("CARGO_PKG_VERSION")
    );
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "weir> " } else { "   -> " };
        if let Some(h) = rl.helper() {
            h.set_pending(&buf);
        }
        match rl.readline(prompt) {
            Ok(line) => {
                buf.push_str(&line);
                buf.push('\n');
                if line.trim_end().ends_with(';') {
                    let sql = std::mem::take(&mut buf);
                    let _ = rl.add_history_entry(sql.trim());
                    let _ = rl.save_history(&hist);
                    run_sql(&engine, &sql).await;
                    refresh_names(&engine, &rl);
                }
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(_) => break,
        }
    }
    0
}

/// Tell completion about the session's tables, views, columns and functions.
fn refresh_names(engine: &weir::Engine, rl: &Editor<SqlHelper, DefaultHistory>) {
    let Some(h) = rl.helper() else { return };
    let catalog = engine.catalog();
    let mut relations: Vec<(String, Vec<String>)> = catalog
        .tables
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.columns.iter().map(|c| c.name.clone()).collect(),
            )
        })
        .collect();
    relations.extend(catalog.views.keys().map(|v| (v.clone(), vec![])));
    h.set_names(Names {
        relations,
        functions: engine.function_names(),
    });
}

/// Run statements, printing results; false when one failed.
async fn run_sql(engine: &weir::Engine, sql: &str) -> bool {
    let statements = match weir::planner::parse_script(sql) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", render_error(sql, &weir::EngineError::Plan(e)));
            return false;
        }
    };
    for st in statements {
        match engine.execute_statement(st).await {
            Ok(out) => show(engine, out).await,
            Err(e) => {
                eprintln!("{}", render_error(sql, &e));
                return false;
            }
        }
    }
    true
}

async fn show(engine: &weir::Engine, out: Output) {
    match out {
        Output::Message(m) | Output::Text(m) => println!("{m}"),
        Output::Table(_, batches) => {
            let mut printer = Printer::new(Format::Table, session_tz(engine));
            batches.iter().for_each(|b| {
                let _ = printer.print(b);
            });
            printer.finish();
        }
        Output::Job(j) => println!(
            "Job {} submitted ({}). SHOW JOBS; lists it, STOP JOB '{}'; stops it.",
            j.id(),
            j.name(),
            j.id()
        ),
        Output::Stream(mut s) => {
            let mut live = Live::new(Mode::of(engine), session_tz(engine));
            stream_rows(&mut s, &mut live).await;
            live.finish();
        }
    }
}

/// Show a query's rows until it ends or Ctrl-C cancels it.
async fn stream_rows(s: &mut weir::QueryStream, live: &mut Live) {
    loop {
        tokio::select! {
            b = s.next_batch() => match b {
                Some(Ok(b)) => {
                    let wm = s.job().metrics().watermark.load(std::sync::atomic::Ordering::Relaxed);
                    live.batch(&b, &weir::engine_metrics::format_watermark(wm));
                }
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return;
                }
                None => return,
            },
            _ = tokio::signal::ctrl_c() => {
                s.job().cancel();
                println!("\nQuery cancelled.");
                return;
            }
        }
    }
}
