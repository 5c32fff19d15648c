//! Fuzz target: see [`ace_fuzz::journal`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ace_fuzz::journal(data);
});
