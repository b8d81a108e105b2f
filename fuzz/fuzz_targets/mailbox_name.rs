#![no_main]

#[path = "../checks/mailbox_name.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
