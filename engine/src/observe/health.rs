//! The health verdict `/health` serves: a failed pipeline, or a running checkpointing job
//! whose last checkpoint is too old, makes the engine unhealthy.

use std::time::SystemTime;

use crate::runtime::job::JobStatus;
use crate::session::stream::JobHandle;

/// Whether `jobs` (the engine's current jobs, see [`crate::session::job_history`]) are healthy: none
/// failed, and each running checkpointing job completed a checkpoint within
/// `max_checkpoint_age`. `Err` holds the reasons as a JSON object.
pub fn health(jobs: &[JobHandle], max_checkpoint_age: std::time::Duration) -> Result<(), String> {
    let mut problems = Vec::new();
    for j in jobs {
        if let JobStatus::Failed(e) = j.status() {
            problems.push(format!("job {} failed: {e}", j.id()));
            continue;
        }
        if j.status() != JobStatus::Running || !j.has_checkpointing() {
            continue;
        }
        let age = match j.checkpoints().last() {
            Some(c) => SystemTime::now()
                .duration_since(c.completed)
                .unwrap_or_default(),
            None => j.uptime(),
        };
        if age > max_checkpoint_age {
            problems.push(format!(
                "job {} has no checkpoint for {:.0} s",
                j.id(),
                age.as_secs_f64()
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(serde_json::json!({"status": "unhealthy", "reasons": problems}).to_string())
}
