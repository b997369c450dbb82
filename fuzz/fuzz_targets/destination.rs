//! The destination matcher against the reference grammar: see `herald::fuzzing::destination` for the properties held.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald::fuzzing::destination(data));
