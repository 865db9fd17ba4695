//! The README's two commands, as a stranger copies them: the first runs the main job and
//! prints its windows, and `.ci/run` runs exactly the second. Each test reads the README, so
//! the README cannot drift from what works.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README's run command and test command.
struct ReadmeCommands {
    run: String,
    test: String,
}

fn readme_commands() -> ReadmeCommands {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    ReadmeCommands {
        run: first_block_after(&readme, "## Run the main job"),
        test: first_block_after(&readme, "## Run every test"),
    }
}

/// The first line of the first ```sh block after `heading`.
fn first_block_after(readme: &str, heading: &str) -> String {
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no '{heading}'"));
    let rest = &readme[at..];
    let start = rest.find("```sh\n").expect("a ```sh block") + "```sh\n".len();
    let block = &rest[start..start + rest[start..].find("```").expect("closing ```")];
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one command under '{heading}': {block}");
    lines[0].trim().to_string()
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let test = readme_commands().test;
    let ci = std::fs::read_to_string(repo().join(".ci/run")).expect(".ci/run");
    let last = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("a command in .ci/run");
    assert_eq!(last, format!("exec {test}"));
    assert!(
        ci.contains("cd \"$(dirname \"$0\")/..\""),
        "runs from the repository root"
    );
}

#[test]
fn the_readme_run_command_prints_the_main_jobs_windows() {
    let run = readme_commands().run;
    let out = Command::new("bash")
        .args(["-c", &run])
        .current_dir(repo())
        .output()
        .expect("bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "`{run}` failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let windows = stdout.lines().filter(|l| l.contains("| sensor-")).count();
    assert_eq!(windows, 100, "two windows of each of 50 sensors:\n{stdout}");
    assert!(
        stdout.contains("window_start") && stdout.contains("avg_temp"),
        "{stdout}"
    );
    assert!(stderr.contains("finished"), "{stderr}");
    // The same rows as the binary this test was built with.
    let file = run.split_whitespace().last().expect("a job file");
    let direct = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", file])
        .current_dir(repo())
        .output()
        .expect("weir");
    assert_eq!(String::from_utf8_lossy(&direct.stdout), stdout);
}
