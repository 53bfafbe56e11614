//! The bytes all image decodes in the process may hold at once. The pixel limit bounds one
//! image (a 64 MP 16-bit RGBA PNG decodes to 512 MB, then 192 MB of RGB), but every decode
//! thread may hold one: on a 64-core server that is tens of gigabytes. Each decode leases
//! what its header says it will need before any pixel is allocated, and waits while the
//! leases out add up to more than the budget. One image alone may always proceed (it is held
//! to the pixel limit), so nothing waits forever.

use parking_lot::{Condvar, Mutex};

struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
}

static BUDGET: Budget = Budget {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

/// A share of the decode budget, returned when dropped.
pub struct Lease {
    bytes: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut used = BUDGET.used.lock();
        *used -= self.bytes;
        BUDGET.freed.notify_all();
    }
}

/// Leases `bytes` of a budget of `capacity`, waiting while others hold too much of it.
pub fn lease(bytes: u64, capacity: u64) -> Lease {
    let mut used = BUDGET.used.lock();
    while *used > 0 && *used + bytes > capacity {
        BUDGET.freed.wait(&mut used);
    }
    *used += bytes;
    Lease { bytes }
}

/// Bytes leased now, for tests and metrics.
pub fn in_use() -> u64 {
    *BUDGET.used.lock()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_wait_for_room_but_one_always_proceeds() {
        let big = lease(10_000, 1_000);
        assert!(
            in_use() >= 10_000,
            "one lease beyond the budget proceeds alone"
        );
        let waiter = std::thread::spawn(|| {
            let _l = lease(500, 1_000);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "the second waits while the first holds too much"
        );
        drop(big);
        waiter.join().unwrap();
    }
}
