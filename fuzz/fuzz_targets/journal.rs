//! The provisioner's journal (`provision::state::read`, `Journal::open`,
//! which compacts it): whatever the file holds (a torn last line after a
//! crash, lines from another version, garbage), reading it and opening it
//! agree, and compaction loses no record.
//!
//! The input is the journal file's content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_fuzz::on_worker_stack;
use mco_provisioner::state::{read, Journal};

fuzz_target!(|data: &[u8]| {
    on_worker_stack(|| check(data));
});

fn check(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provisioner.journal");
    std::fs::write(&path, data).unwrap();
    let Ok(before) = read(&path) else {
        return;
    };
    let journal = Journal::open(&path).expect("a journal that reads opens");
    assert_eq!(journal.all(), &before, "opening read another journal");
    drop(journal);
    let after = read(&path).expect("a compacted journal reads");
    assert_eq!(after, before, "compaction changed the records");
}
