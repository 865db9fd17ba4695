//! The engine's jobs: every running job, and a bounded history of ended ones.
//!
//! Ended jobs beyond the last [`KEPT_ENDED`] are dropped, oldest first (`SHOW JOBS` says how
//! many), so an interactive session that types a query a minute does not grow for ever.
//!
//! `/metrics`, `weir.metrics` and `/health` look only at the *current* jobs: the running ones,
//! and for each submitted pipeline (INSERT INTO or statement set, known by its name, such as
//! `insert into sink`) the latest job of that name once it ended. So a finished or failed
//! pipeline keeps its final numbers and `weir_job_running 0` on `/metrics`, and a failed one
//! keeps `/health` at 503, until the same INSERT is submitted again (or its job leaves the
//! history). Ad-hoc jobs (interactive queries, EXPLAIN ANALYZE) leave both the moment they end.

use crate::runtime::job::JobStatus;
use crate::session::stream::JobHandle;

/// Ended jobs kept for `SHOW JOBS` and `weir.jobs`.
pub const KEPT_ENDED: usize = 100;

/// Why a job was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A query whose rows go to the caller, or an EXPLAIN ANALYZE.
    AdHoc,
    /// A submitted INSERT INTO or statement set: a pipeline.
    Submitted,
}

/// One job of the history.
#[derive(Clone)]
struct Entry {
    job: JobHandle,
    kind: JobKind,
}

impl Entry {
    fn running(&self) -> bool {
        self.job.status() == JobStatus::Running
    }
}

/// Running jobs and the last [`KEPT_ENDED`] ended ones, in the order they started.
#[derive(Default)]
pub struct JobHistory {
    entries: Vec<Entry>,
    dropped: u64,
}

impl JobHistory {
    /// Add a job that just started, then drop ended jobs beyond [`KEPT_ENDED`].
    pub fn push(&mut self, job: JobHandle, kind: JobKind) {
        self.entries.push(Entry { job, kind });
        self.prune();
    }

    /// Drop the oldest ended jobs beyond [`KEPT_ENDED`] (jobs end without telling the history,
    /// so readers prune first).
    pub fn prune(&mut self) {
        let ended = self.entries.iter().filter(|e| !e.running()).count();
        let mut excess = ended.saturating_sub(KEPT_ENDED);
        self.dropped += excess as u64;
        self.entries.retain(|e| {
            let drop = excess > 0 && !e.running();
            excess -= usize::from(drop);
            !drop
        });
    }

    /// Ended jobs dropped from the history so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Every job kept, oldest first.
    pub fn all(&self) -> Vec<JobHandle> {
        self.entries.iter().map(|e| e.job.clone()).collect()
    }

    /// The kept job with id `id`.
    pub fn find(&self, id: &str) -> Option<&JobHandle> {
        self.entries
            .iter()
            .map(|e| &e.job)
            .find(|j| j.id().to_string() == id.trim())
    }

    /// The jobs `/metrics` shows and `/health` judges (see the module docs).
    pub fn current(&self) -> Vec<JobHandle> {
        let latest = |e: &Entry| {
            !self.entries.iter().any(|n| {
                n.kind == JobKind::Submitted
                    && n.job.name() == e.job.name()
                    && n.job.id() > e.job.id()
            })
        };
        self.entries
            .iter()
            .filter(|e| e.running() || (e.kind == JobKind::Submitted && latest(e)))
            .map(|e| e.job.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::job::JobShared;

    fn job(name: &str) -> JobHandle {
        JobHandle(JobShared::new(name.into()))
    }

    #[test]
    fn keeps_running_jobs_and_the_last_hundred_ended() {
        let mut h = JobHistory::default();
        let running = job("insert into a");
        h.push(running.clone(), JobKind::Submitted);
        for _ in 0..KEPT_ENDED + 5 {
            let q = job("query");
            q.cancel();
            h.push(q, JobKind::AdHoc);
        }
        assert_eq!(h.all().len(), KEPT_ENDED + 1);
        assert_eq!(h.dropped(), 5);
        assert_eq!(h.all()[0].id(), running.id(), "the running job stays");
        assert_eq!(h.current().len(), 1, "ended queries are not current");
    }

    #[test]
    fn the_latest_job_of_a_pipeline_stays_current_after_it_ended() {
        let mut h = JobHistory::default();
        let first = job("insert into a");
        first.cancel();
        h.push(first.clone(), JobKind::Submitted);
        let ids = |h: &JobHistory| h.current().iter().map(|j| j.id()).collect::<Vec<_>>();
        assert_eq!(ids(&h), vec![first.id()]);
        let second = job("insert into a");
        h.push(second.clone(), JobKind::Submitted);
        assert_eq!(ids(&h), vec![second.id()], "superseded by the new run");
        second.cancel();
        assert_eq!(ids(&h), vec![second.id()]);
    }
}
