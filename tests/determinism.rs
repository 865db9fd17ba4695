//! Determinism: results never depend on how rows were grouped into batches.

use crate::common::*;

#[tokio::test]
async fn batch_size_does_not_change_results() {
    // Updating results are compared as final tables: how many intermediate updates there are
    // depends on batching (as with Flink's mini-batches), the table they lead to does not.
    for case in all_conformance_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let sql = job_in_dir(&case);
        let reference = final_table(&run_query(&sql, 4096).await);
        assert!(!reference.is_empty(), "{name}: no rows");
        for size in [1, 7] {
            let rows = final_table(&run_query(&sql, size).await);
            assert_same_rows(&format!("{name} (batch size {size})"), &rows, &reference);
        }
    }
}
