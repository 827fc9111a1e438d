//! See `listenfd::fuzzing::check_notify_address` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| listenfd::fuzzing::check_notify_address(data));
