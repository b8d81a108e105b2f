//! Proves that the hot commands allocate nothing: NOOP, IDLE and DONE, fed through the
//! session as the driver feeds them, with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::path::Path;

use hato::imap::harness::Harness;
use hato::imap::session::{AuthVerdict, Step};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local Cell that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn noop_idle_and_done_allocate_nothing() {
    let mut h = Harness::new(Path::new("/nonexistent/hato-test-spool"));
    assert!(matches!(h.on_input(b"a LOGIN joe pw\r\n"), Step::Verify(_)));
    h.with(|session, ctx, out| session.finish_auth(AuthVerdict::Accepted("joe".into()), ctx, out));

    let before = allocations();
    for _ in 0..1000 {
        h.out.clear();
        assert_eq!(h.on_input(b"n1 NOOP\r\n"), Step::NeedInput);
        assert_eq!(h.out, b"n1 OK NOOP completed\r\n");
        h.out.clear();
        h.on_input(b"i1 IDLE\r\n");
        assert!(h.session.is_idling());
        h.on_input(b"DONE\r\n");
        assert_eq!(h.out, b"+ idling\r\ni1 OK IDLE terminated\r\n");
    }
    assert_eq!(allocations() - before, 0, "the hot path allocated");

    // The counter does see allocations: a LOGIN copies its credentials out.
    let before = allocations();
    let mut other = Harness::new(Path::new("/nonexistent/hato-test-spool"));
    let counted_from = allocations();
    assert!(matches!(
        other.on_input(b"b LOGIN joe pw\r\n"),
        Step::Verify(_)
    ));
    assert!(
        allocations() > counted_from && counted_from > before,
        "the counting allocator is not counting"
    );
}

#[test]
fn noop_on_an_unchanged_selected_mailbox_allocates_nothing() {
    let spool = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::logged_in(spool.path(), "joe");
    // Put three messages in INBOX and select it, running the storage work as the driver would.
    for i in 0..3 {
        h.feed(format!("p{i} APPEND INBOX {{12+}}\r\nSubject: x\r\n\r\n").as_bytes());
    }
    h.out.clear();
    h.feed(b"s SELECT INBOX\r\n");
    assert!(
        String::from_utf8_lossy(&h.out).contains("* 3 EXISTS"),
        "{}",
        String::from_utf8_lossy(&h.out)
    );

    let before = allocations();
    for _ in 0..1000 {
        h.out.clear();
        assert_eq!(h.on_input(b"n NOOP\r\n"), Step::NeedInput);
        assert_eq!(h.out, b"n OK NOOP completed\r\n");
    }
    assert_eq!(allocations() - before, 0, "an unchanged NOOP allocated");
}
