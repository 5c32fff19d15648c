//! Fuzz target: see [`ace_fuzz::csr`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ace_fuzz::csr(data);
});
