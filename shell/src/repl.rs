//! The interactive shell: multi-line statements until `;` (with a continuation prompt),
//! persistent history with Ctrl-R search, tab completion and highlighting ([`crate::helper`]),
//! live query results ([`crate::live`]), and Ctrl-C ([`crate::interrupt`]) that cancels the
//! running statement (a query, an `EXPLAIN ANALYZE`, planning) and the statements typed after
//! it, and keeps the shell. An error never exits the shell.

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::Editor;
use weir::planner::Statement;
use weir::Output;

use crate::helper::{Names, SqlHelper};
use crate::interrupt::Interrupts;
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
    if let Some(sql) = execute {
        let Some(mut shell) = Shell::start() else {
            return 1;
        };
        return shell.run_sql(&sql).await.exit_code();
    }
    // The line editor takes SIGINT over when it is created (for Ctrl-C while it reads), so the
    // shell's listener comes after it: the listener then sees every SIGINT.
    let Ok(mut rl) = Editor::<SqlHelper, DefaultHistory>::new() else {
        eprintln!("error: cannot open the terminal");
        return 1;
    };
    let Some(mut shell) = Shell::start() else {
        return 1;
    };
    if let Some(f) = file {
        match std::fs::read_to_string(&f) {
            Ok(sql) => {
                shell.run_sql(&sql).await;
            }
            Err(e) => eprintln!("error: cannot read {f}: {e}"),
        }
    }
    interactive(&mut shell, &mut rl, history).await
}

/// Read statements from the terminal until Ctrl-D.
async fn interactive(
    shell: &mut Shell,
    rl: &mut Editor<SqlHelper, DefaultHistory>,
    history: Option<String>,
) -> i32 {
    rl.set_helper(Some(SqlHelper::default()));
    refresh_names(&shell.engine, rl);
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
                    shell.run_sql(&sql).await;
                    refresh_names(&shell.engine, rl);
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

/// How running some statements ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Done,
    Failed,
    /// Ctrl-C cancelled a statement; the statements after it did not run.
    Cancelled,
}

impl Outcome {
    /// The exit code of `weir -e`: 130 after Ctrl-C, as a shell reports SIGINT.
    fn exit_code(self) -> i32 {
        match self {
            Outcome::Done => 0,
            Outcome::Failed => 1,
            Outcome::Cancelled => 130,
        }
    }
}

/// The session: the engine and the shell's one Ctrl-C listener.
struct Shell {
    engine: weir::Engine,
    interrupts: Interrupts,
}

impl Shell {
    /// A new session whose Ctrl-C listener runs from now on, before any statement.
    fn start() -> Option<Shell> {
        match Interrupts::install() {
            Ok(interrupts) => Some(Shell {
                engine: weir::Engine::new(),
                interrupts,
            }),
            Err(e) => {
                eprintln!("error: cannot listen for Ctrl-C: {e}");
                None
            }
        }
    }

    /// Run statements in order, printing results, until one fails or Ctrl-C cancels one.
    async fn run_sql(&mut self, sql: &str) -> Outcome {
        let statements = match weir::planner::parse_script(sql) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}", render_error(sql, &weir::EngineError::Plan(e)));
                return Outcome::Failed;
            }
        };
        for st in statements {
            let outcome = self.run_statement(sql, st).await;
            if outcome != Outcome::Done {
                return outcome;
            }
        }
        Outcome::Done
    }

    /// Run one statement; Ctrl-C while it runs cancels it, never the shell.
    async fn run_statement(&mut self, sql: &str, st: Statement) -> Outcome {
        self.interrupts.arm();
        if matches!(st, Statement::ExplainAnalyze(_)) {
            println!("Running the query; Ctrl-C stops it and shows the plan of what ran so far.");
        }
        let out = self
            .engine
            .execute_statement_until(st, self.interrupts.pressed())
            .await;
        let outcome = match out {
            Ok(out) => show(&self.engine, out, &mut self.interrupts).await,
            Err(weir::EngineError::Cancelled) => {
                println!("Statement cancelled.");
                Outcome::Cancelled
            }
            Err(e) => {
                eprintln!("{}", render_error(sql, &e));
                Outcome::Failed
            }
        };
        match self.interrupts.fired() {
            true => Outcome::Cancelled,
            false => outcome,
        }
    }
}

async fn show(engine: &weir::Engine, out: Output, interrupts: &mut Interrupts) -> Outcome {
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
            let max_rows = crate::view::max_rows(&engine.settings());
            let mut live = Live::new(Mode::of(engine), session_tz(engine), max_rows);
            let outcome = stream_rows(&mut s, &mut live, interrupts).await;
            live.finish();
            return outcome;
        }
    }
    Outcome::Done
}

/// Show a query's rows until it ends or Ctrl-C cancels it.
async fn stream_rows(
    s: &mut weir::QueryStream,
    live: &mut Live,
    interrupts: &mut Interrupts,
) -> Outcome {
    loop {
        tokio::select! {
            biased;
            () = interrupts.pressed() => {
                s.job().cancel();
                println!("\nQuery cancelled.");
                return Outcome::Cancelled;
            }
            b = s.next_batch() => match b {
                Some(Ok(b)) => {
                    let wm = s.job().metrics().watermark.load(std::sync::atomic::Ordering::Relaxed);
                    live.batch(&b, &weir::engine_metrics::format_watermark(wm));
                }
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return Outcome::Failed;
                }
                None => return Outcome::Done,
            },
        }
    }
}
