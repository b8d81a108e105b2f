//! Proves that the hot commands allocate nothing: NOOP, IDLE and DONE, fed through the
//! session as the driver feeds them, with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::path::Path;
use std::sync::Arc;

use hato::config::Settings;
use hato::imap::NoObserver;
use hato::imap::session::{AuthVerdict, Context, Session, Step};
use hato::store::Store;

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
    let settings = Settings::default();
    let mut observer = NoObserver;
    let store = Arc::new(Store::new(Path::new("/nonexistent/hato-test-spool")));
    let mut ctx = Context {
        settings: &settings,
        observer: &mut observer,
        store: &store,
        tls_available: false,
    };
    let mut out = Vec::with_capacity(4096);
    let mut session = Session::new();
    assert!(matches!(
        session.on_input(b"a LOGIN joe pw\r\n", &mut ctx, &mut out),
        Step::Verify(_)
    ));
    session.finish_auth(AuthVerdict::Accepted("joe".into()), &mut ctx, &mut out);

    let before = allocations();
    for _ in 0..1000 {
        out.clear();
        assert_eq!(
            session.on_input(b"n1 NOOP\r\n", &mut ctx, &mut out),
            Step::NeedInput
        );
        assert_eq!(out, b"n1 OK NOOP completed\r\n");
        out.clear();
        session.on_input(b"i1 IDLE\r\n", &mut ctx, &mut out);
        assert!(session.is_idling());
        session.on_input(b"DONE\r\n", &mut ctx, &mut out);
        assert_eq!(out, b"+ idling\r\ni1 OK IDLE terminated\r\n");
    }
    assert_eq!(allocations() - before, 0, "the hot path allocated");

    // The counter does see allocations: a LOGIN copies its credentials out.
    let before = allocations();
    let mut other = Session::new();
    assert!(matches!(
        other.on_input(b"b LOGIN joe pw\r\n", &mut ctx, &mut out),
        Step::Verify(_)
    ));
    assert!(
        allocations() > before,
        "the counting allocator is not counting"
    );
}

#[test]
fn noop_on_an_unchanged_selected_mailbox_allocates_nothing() {
    let spool = tempfile::tempdir().expect("tempdir");
    let settings = Settings::default();
    let mut observer = NoObserver;
    let store = Arc::new(Store::new(spool.path()));
    let mut ctx = Context {
        settings: &settings,
        observer: &mut observer,
        store: &store,
        tls_available: false,
    };
    let mut out = Vec::with_capacity(4096);
    let mut session = Session::new();
    session.on_input(b"a LOGIN joe pw\r\n", &mut ctx, &mut out);
    session.finish_auth(AuthVerdict::Accepted("joe".into()), &mut ctx, &mut out);
    // Put three messages in INBOX and select it, running the storage work as the driver would.
    for i in 0..3 {
        session.on_input_inline(
            format!("p{i} APPEND INBOX {{12+}}\r\nSubject: x\r\n\r\n").as_bytes(),
            &mut ctx,
            &mut out,
        );
    }
    out.clear();
    session.on_input_inline(b"s SELECT INBOX\r\n", &mut ctx, &mut out);
    assert!(
        String::from_utf8_lossy(&out).contains("* 3 EXISTS"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    let before = allocations();
    for _ in 0..1000 {
        out.clear();
        assert_eq!(
            session.on_input(b"n NOOP\r\n", &mut ctx, &mut out),
            Step::NeedInput
        );
        assert_eq!(out, b"n OK NOOP completed\r\n");
    }
    assert_eq!(allocations() - before, 0, "an unchanged NOOP allocated");
}
