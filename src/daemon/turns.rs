//! The turn to wait for the next connection, which a daemon process's serving threads pass
//! among themselves last in, first out: the thread that became free most recently waits next.
//!
//! With a plain mutex the free threads queue in arrival order, so one request after another
//! visits every thread of the process in rotation: each thread's stack and malloc arena stay
//! touched (and resident), and each request lands on the thread whose caches are coldest. Last
//! in, first out keeps the work on as few threads as the load needs, as C mod_wsgi's stack of
//! idle threads does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;

/// A turn one thread holds at a time.
#[derive(Default)]
pub struct Turns {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    held: bool,
    /// Threads waiting for the turn, the most recent last.
    waiting: Vec<Arc<Waiter>>,
}

struct Waiter {
    thread: Thread,
    granted: AtomicBool,
}

/// Holding the turn; dropping it hands the turn on.
pub struct Turn<'a> {
    turns: &'a Turns,
}

impl Turns {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the turn.
    pub fn take(&self) -> Turn<'_> {
        let waiter = {
            let mut state = self.state();
            if !state.held {
                state.held = true;
                return Turn { turns: self };
            }
            let waiter = Arc::new(Waiter {
                thread: std::thread::current(),
                granted: AtomicBool::new(false),
            });
            state.waiting.push(waiter.clone());
            waiter
        };
        // park() may return spuriously; the flag says when the turn is really ours.
        while !waiter.granted.load(Ordering::Acquire) {
            std::thread::park();
        }
        Turn { turns: self }
    }

    /// How many threads wait for the turn.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state().waiting.len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.turns.state();
        match state.waiting.pop() {
            Some(next) => {
                next.granted.store(true, Ordering::Release);
                next.thread.unpark();
            }
            None => state.held = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    fn wait_until(what: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_latest_waiter_gets_the_turn_first() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = turns.take();
        let mut threads = Vec::new();
        for name in ["first", "second", "third"] {
            let (mine, order) = (turns.clone(), order.clone());
            let before = turns.waiting();
            threads.push(std::thread::spawn(move || {
                let _turn = mine.take();
                order.lock().unwrap().push(name);
            }));
            wait_until(|| turns.waiting() == before + 1);
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["third", "second", "first"]);
        // Free again: taken at once.
        drop(turns.take());
    }

    #[test]
    fn one_holder_at_a_time() {
        let turns = Arc::new(Turns::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (turns, inside) = (turns.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _turn = turns.take();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
