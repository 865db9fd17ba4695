//! The `weir` binary: `weir run job.sql` runs a job file; `weir` alone opens the SQL shell.

mod helper;
mod interrupt;
mod live;
mod logging;
mod output;
mod progress;
mod repl;
mod run;
mod view;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Weir: streaming SQL over Arrow (Flink dialect)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run one statement, then exit.
    #[arg(short = 'e', long = "execute")]
    execute: Option<String>,
    /// Run a file, then stay in the shell.
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// History file of the shell.
    #[arg(long)]
    history: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every statement of a job file.
    Run(run::RunArgs),
}

fn main() {
    let cli = Cli::parse();
    logging::init(matches!(&cli.command, Some(Command::Run(a)) if a.quiet));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async move {
        match cli.command {
            Some(Command::Run(args)) => run::run(args).await,
            None => repl::repl(cli.execute, cli.file, cli.history).await,
        }
    });
    std::process::exit(code);
}
