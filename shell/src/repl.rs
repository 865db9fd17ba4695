//! The interactive shell: multi-line statements until `;`, history, Ctrl-C cancels the running
//! query and keeps the shell.

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use weir::Output;

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
    let Ok(mut rl) = DefaultEditor::new() else {
        eprintln!("error: cannot open the terminal");
        return 1;
    };
    let hist = history_path(history);
    let _ = rl.load_history(&hist);
    println!(
        "Weir {} — streaming SQL. End statements with ';'. Ctrl-D exits.",
        env!("CARGO_PKG_VERSION")
    );
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "weir> " } else { "  ... " };
        match rl.readline(prompt) {
            Ok(line) => {
                buf.push_str(&line);
                buf.push('\n');
                if line.trim_end().ends_with(';') {
                    let sql = std::mem::take(&mut buf);
                    let _ = rl.add_history_entry(sql.trim());
                    let _ = rl.save_history(&hist);
                    run_sql(&engine, &sql).await;
                }
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(_) => break,
        }
    }
    0
}

/// Run statements, printing results as tables; false when one failed.
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
    let mut printer = Printer::new(Format::Table, session_tz(engine));
    match out {
        Output::Message(m) | Output::Text(m) => println!("{m}"),
        Output::Table(_, batches) => {
            batches.iter().for_each(|b| {
                let _ = printer.print(b);
            });
            printer.finish();
        }
        Output::Job(j) => println!("Job {} submitted ({}).", j.id(), j.name()),
        Output::Stream(mut s) => {
            stream_rows(&mut s, &mut printer).await;
            printer.finish();
        }
    }
}

/// Print a query's rows until it ends or Ctrl-C cancels it.
async fn stream_rows(s: &mut weir::QueryStream, printer: &mut Printer) {
    loop {
        tokio::select! {
            b = s.next_batch() => match b {
                Some(Ok(b)) => {
                    let _ = printer.print(&b);
                }
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return;
                }
                None => return,
            },
            _ = tokio::signal::ctrl_c() => {
                s.job().cancel();
                println!("Query cancelled.");
                return;
            }
        }
    }
}
