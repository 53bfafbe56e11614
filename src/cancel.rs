//! Whether the call being served on this thread is still wanted. The gRPC layer marks a call
//! cancelled when its future is dropped (the client cancelled, its deadline or the server's
//! request timeout passed); long service work (folder listings, searches in chunks) asks
//! [`requested`] between steps and stops with `Cancelled` instead of computing for nobody.
//! A thread-local: the flag follows the blocking thread that runs the call, and code that no
//! call runs (jobs, local commands) always sees "not cancelled". A leaf.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

thread_local! {
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Marks its call cancelled when dropped, unless [`CancelOnDrop::disarm`]ed first: held by
/// the future that waits for the call, so dropping that future cancels the work.
pub struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl CancelOnDrop {
    /// A fresh call: the guard, and the flag the work checks.
    pub fn new() -> (CancelOnDrop, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (
            CancelOnDrop {
                flag: flag.clone(),
                armed: true,
            },
            flag,
        )
    }

    /// The call ended normally: dropping the guard now cancels nothing.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::Release);
        }
    }
}

/// Runs `f` as the call that `flag` follows (on this thread).
pub fn within<T>(flag: Arc<AtomicBool>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(flag)));
    f()
}

/// True when the call this thread serves was cancelled.
pub fn requested() -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_guard_cancels_its_call_and_only_it() {
        assert!(!requested());
        let (guard, flag) = CancelOnDrop::new();
        within(flag.clone(), || {
            assert!(!requested());
        });
        drop(guard);
        within(flag, || assert!(requested()));
        assert!(!requested(), "outside the call nothing is cancelled");
        let (guard, flag) = CancelOnDrop::new();
        guard.disarm();
        within(flag, || assert!(!requested()));
    }
}
