//! Fuzz target: see [`ace_fuzz::gateway`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ace_fuzz::gateway(data);
});
