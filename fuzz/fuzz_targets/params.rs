//! Query strings, form bodies and cookies: see `herald::fuzzing::params` for the properties held.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald::fuzzing::params(data));
