//! CSV lines through the segment decoder (filesystem and Kafka sources), checked against
//! decoding each line on its own. The first byte picks the batch size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, lines)) = data.split_first() else {
        return;
    };
    weir_connectors::fuzzing::decode_lines(false, 1 + usize::from(*size % 16), lines);
});
