//! Determinism: results never depend on how rows were grouped into batches.

use crate::common::*;

#[tokio::test]
async fn batch_size_does_not_change_results() {
    for case in conformance_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let sql = job_in_dir(&case);
        let reference = run_query(&sql, 4096).await;
        assert!(!reference.is_empty(), "{name}: no rows");
        for size in [1, 7] {
            let rows = run_query(&sql, size).await;
            assert_same_rows(&format!("{name} (batch size {size})"), &rows, &reference);
        }
    }
}
