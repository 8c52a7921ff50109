//! Drives a session with the operations the input encodes (connect, disconnect, queue, write,
//! acknowledge, let time pass) and checks a model of the client after every step. The
//! interpreter lives in `nanomq::session::fuzzing`, where it documents the input format and the
//! invariants, so a unit test can replay this corpus without cargo-fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nanomq::session::fuzzing::run(data));
