//! SockJS client payloads (xhr_send, jsonp_send bodies and forms, websocket messages): see `herald::fuzzing::sockjs` for the properties held.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald::fuzzing::sockjs(data));
