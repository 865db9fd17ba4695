//! What recovery reads from a checkpoint directory: the `_metadata` file, each source's
//! snapshot, the connectors' positions and pending commits, and operator state (Arrow IPC
//! entries and the in-memory backend's file). Corrupt bytes must give an error, not a panic,
//! and readable metadata must read back the same after being written again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_engine::checkpoint::CheckpointMeta;
use weir_engine::runtime::checkpointed::SourceSnapshot;

/// libfuzzer-sys's panic hook aborts on every panic, even one Weir catches: `decode_columns`
/// turns panics inside arrow-ipc (which unwraps parts of a schema it verified) into errors, so
/// this target installs the default hook once. A panic that escapes still aborts the run.
static HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| drop(std::panic::take_hook()));
    let _ = weir_engine::state::decode_columns(data);
    let _ = weir_engine::state::MemoryBackend::from_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(meta) = CheckpointMeta::from_json(text) {
        let again = CheckpointMeta::from_json(&meta.to_json());
        assert_eq!(
            again.as_ref(),
            Some(&meta),
            "metadata must read back as written"
        );
        for snapshot in meta.snapshots.values() {
            read_snapshot(snapshot);
        }
    }
    read_snapshot(text);
});

fn read_snapshot(text: &str) {
    if let Ok(s) = SourceSnapshot::from_json(text) {
        if let Some(position) = &s.position {
            weir_connectors::fuzzing::read_positions(position);
        }
    }
    weir_connectors::fuzzing::read_positions(text);
}
