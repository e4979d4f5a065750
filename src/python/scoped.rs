//! A value that Python objects may refer to only while a Rust scope lasts.
//!
//! `start_response`, `wsgi.input` and `wsgi.errors` are Python objects that an application can
//! keep after its request ended. They hold an `Arc<Scoped<T>>`; the request's state is reachable
//! through it only inside [`Scoped::run`], and afterwards every access reports `Finished`.

use pyo3::Python;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeError {
    /// The scope has ended (the request is over).
    Finished,
    /// The value is already in use further up this thread's own stack.
    Busy,
}

/// What a thread lets go of while it waits for the value: the GIL (`Python`), as a user may
/// release the GIL inside (Apache's I/O does) and a waiter holding it would keep that user from
/// finishing.
pub trait Waiting: Copy {
    fn without_locks(self, wait: impl FnOnce() + Send);
}

impl Waiting for Python<'_> {
    fn without_locks(self, wait: impl FnOnce() + Send) {
        self.detach(wait)
    }
}

/// One thread at a time uses the value; the others wait for it (see [`Waiting`]).
pub struct Scoped<T> {
    value: AtomicPtr<T>,
    user: User,
}

/// Who uses the value: a thread, named by the address of a thread-local (cheaper than its
/// `ThreadId`, and unique among running threads), and how many threads wait for it.
struct User {
    state: Mutex<UserState>,
    released: Condvar,
}

#[derive(Default)]
struct UserState {
    thread: Option<usize>,
    waiters: usize,
}

thread_local! {
    static THREAD_MARK: u8 = const { 0 };
}

fn this_thread() -> usize {
    THREAD_MARK.with(|mark| mark as *const u8 as usize)
}

impl User {
    fn lock(&self) -> MutexGuard<'_, UserState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_until_free(&self) {
        let mut state = self.lock();
        state.waiters += 1;
        while state.thread.is_some() {
            state = self.released.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.waiters -= 1;
    }

    fn release(&self) {
        let mut state = self.lock();
        state.thread = None;
        // Waking costs a system call: only when someone waits.
        if state.waiters > 0 {
            self.released.notify_all();
        }
    }
}

impl<T> Scoped<T> {
    /// Makes `value` reachable through the `Arc` given to `f` while `f` runs. Before returning it
    /// waits (without the GIL) for a user on another thread to finish.
    pub fn run<R>(waiting: impl Waiting, value: &mut T, f: impl FnOnce(&Arc<Scoped<T>>) -> R) -> R {
        let scoped = Arc::new(Scoped {
            value: AtomicPtr::new(value),
            user: User {
                state: Mutex::new(UserState::default()),
                released: Condvar::new(),
            },
        });
        let result = catch_unwind(AssertUnwindSafe(|| f(&scoped)));
        scoped.value.store(ptr::null_mut(), Ordering::SeqCst);
        if scoped.user.lock().thread.is_some() {
            let user = &scoped.user;
            waiting.without_locks(|| user.wait_until_free());
        }
        match result {
            Ok(r) => r,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Runs `f` on the value if the scope is still open, after any other thread using it has
    /// finished. Nested use on one thread is refused (`Busy`).
    pub fn with<R>(
        &self,
        waiting: impl Waiting,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, ScopeError> {
        let me = this_thread();
        loop {
            {
                let mut user = self.user.lock();
                match user.thread {
                    None => {
                        user.thread = Some(me);
                        break;
                    }
                    Some(other) if other == me => return Err(ScopeError::Busy),
                    Some(_) => {}
                }
            }
            let user = &self.user;
            waiting.without_locks(|| user.wait_until_free());
        }
        struct Release<'a, T>(&'a Scoped<T>);
        impl<T> Drop for Release<'_, T> {
            fn drop(&mut self) {
                self.0.user.release();
            }
        }
        let _release = Release(self);
        let p = self.value.load(Ordering::SeqCst);
        if p.is_null() {
            return Err(ScopeError::Finished);
        }
        // SAFETY: p is non-null only inside `run`, whose `&mut T` borrow is live; `user` makes
        // this the only reference handed out, and `run` waits for it before the borrow ends.
        Ok(f(unsafe { &mut *p }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    /// No GIL in these tests.
    #[derive(Clone, Copy)]
    struct Plain;

    impl Waiting for Plain {
        fn without_locks(self, wait: impl FnOnce() + Send) {
            wait()
        }
    }

    #[test]
    fn value_is_reachable_only_inside_the_scope() {
        let mut n = 1;
        let kept = Scoped::run(Plain, &mut n, |s| {
            assert_eq!(
                s.with(Plain, |v| {
                    *v += 1;
                    *v
                }),
                Ok(2)
            );
            s.clone()
        });
        assert_eq!(n, 2);
        assert_eq!(kept.with(Plain, |v| *v), Err(ScopeError::Finished));
    }

    #[test]
    fn nested_use_on_one_thread_is_refused() {
        let mut n = 0;
        Scoped::run(Plain, &mut n, |s| {
            let inner = s.with(Plain, |_| s.with(Plain, |_| ()));
            assert_eq!(inner, Ok(Err(ScopeError::Busy)));
        });
    }

    #[test]
    fn another_thread_waits_for_the_value_rather_than_failing() {
        let mut n = 0u32;
        Scoped::run(Plain, &mut n, |s| {
            let other = s.clone();
            let (started, holding) = std::sync::mpsc::channel();
            let holder = thread::spawn(move || {
                other.with(Plain, |v| {
                    started.send(()).unwrap();
                    thread::sleep(Duration::from_millis(100));
                    *v += 1;
                })
            });
            holding.recv().unwrap();
            assert_eq!(s.with(Plain, |v| *v + 10), Ok(11));
            assert_eq!(holder.join().unwrap(), Ok(()));
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn the_scope_ends_after_a_user_on_another_thread_is_done() {
        let mut n = 0u32;
        let (started, holding) = std::sync::mpsc::channel();
        let holder = Scoped::run(Plain, &mut n, |s| {
            let other = s.clone();
            let holder = thread::spawn(move || {
                other.with(Plain, |v| {
                    started.send(()).unwrap();
                    thread::sleep(Duration::from_millis(100));
                    *v = 7;
                })
            });
            holding.recv().unwrap();
            holder
        });
        // The write happened before run returned, and the borrow ended only then.
        assert_eq!(n, 7);
        assert_eq!(holder.join().unwrap(), Ok(()));
    }
}
