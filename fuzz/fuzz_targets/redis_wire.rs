//! The Redis bus's message envelope and codec: see `herald::fuzzing::redis_wire` for the properties held.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald::fuzzing::redis_wire(data));
