//! Plan goldens: what each query becomes, reviewed in diffs. For every job in `sql-examples/`,
//! every conformance case (`tests/conformance/*/job.sql`) and every file in `tests/plans/`
//! (more plan shapes, and planning errors), the output of `weir run --dry-run` (its exit code,
//! the streaming plans, the errors with their carets) must equal `tests/plans/<name>.plan`.
//!
//! After a change to the planner, regenerate them and read the diff:
//! `WEIR_BLESS=1 cargo test -p weir-shell --test plans`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A job to plan: its golden's name, the folder it runs from and its file (relative to it).
struct Case {
    name: String,
    dir: PathBuf,
    file: String,
}

fn sql_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().to_string()
}

fn cases() -> Vec<Case> {
    let root = repo();
    let mut cases = Vec::new();
    for f in sql_files(&root.join("sql-examples")) {
        cases.push(Case {
            name: format!("example_{}", stem(&f)),
            dir: root.clone(),
            file: format!("sql-examples/{}", f.file_name().unwrap().to_string_lossy()),
        });
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("tests/conformance"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("job.sql").exists())
        .collect();
    dirs.sort();
    for d in dirs {
        cases.push(Case {
            name: format!("conformance_{}", d.file_name().unwrap().to_string_lossy()),
            dir: d,
            file: "job.sql".into(),
        });
    }
    for f in sql_files(&root.join("tests/plans")) {
        cases.push(Case {
            name: stem(&f),
            dir: root.join("tests/plans"),
            file: f.file_name().unwrap().to_string_lossy().to_string(),
        });
    }
    cases
}

/// `weir run --dry-run` of a case, as the golden records it, at parallelism 4 (the default is
/// the machine's cores; a fixed one keeps the goldens the same everywhere).
fn dry_run(case: &Case) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--dry-run", "-p", "4", &case.file])
        .current_dir(&case.dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    format!(
        "-- weir run --dry-run -p 4 {}\n-- exit: {}\n-- stdout\n{}-- stderr\n{}",
        case.file,
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn plans_match_their_goldens() {
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let goldens = repo().join("tests/plans");
    let mut differ = Vec::new();
    for case in cases() {
        let got = dry_run(&case);
        let path = goldens.join(format!("{}.plan", case.name));
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            eprintln!("--- {} (expected)\n{want}+++ (got)\n{got}", path.display());
            differ.push(case.name);
        }
    }
    assert!(
        differ.is_empty(),
        "plans differ from their goldens: {differ:?}; if the change is intended, run \
         WEIR_BLESS=1 cargo test -p weir-shell --test plans and review the diff"
    );
}

/// Every golden belongs to a case (a removed example leaves no stale golden behind).
#[test]
fn every_golden_has_its_case() {
    let names: Vec<String> = cases().into_iter().map(|c| c.name).collect();
    for e in std::fs::read_dir(repo().join("tests/plans"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "plan") {
            assert!(names.contains(&stem(&p)), "{} has no case", p.display());
        }
    }
}
