//! A value that Python objects may refer to only while a Rust scope lasts.
//!
//! `start_response`, `wsgi.input` and `wsgi.errors` are Python objects that an application can
//! keep after its request ended. They hold an `Arc<Scoped<T>>`; the request's state is reachable
//! through it only inside [`Scoped::run`], and afterwards every access reports `Finished`.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeError {
    /// The scope has ended (the request is over).
    Finished,
    /// Another thread is using the value right now.
    Busy,
}

pub struct Scoped<T> {
    value: AtomicPtr<T>,
    busy: AtomicBool,
}

// SAFETY: access to the pointee is serialised by `busy` and limited to the scope's lifetime.
unsafe impl<T: Send> Send for Scoped<T> {}
// SAFETY: as above; `with` hands out the &mut to one caller at a time.
unsafe impl<T: Send> Sync for Scoped<T> {}

impl<T> Scoped<T> {
    /// Makes `value` reachable through the `Arc` given to `f` while `f` runs.
    pub fn run<R>(value: &mut T, f: impl FnOnce(&Arc<Scoped<T>>) -> R) -> R {
        let scoped = Arc::new(Scoped {
            value: AtomicPtr::new(value),
            busy: AtomicBool::new(false),
        });
        let result = catch_unwind(AssertUnwindSafe(|| f(&scoped)));
        scoped.value.store(ptr::null_mut(), Ordering::SeqCst);
        // Wait out a holder on another thread before `value`'s borrow ends.
        while scoped.busy.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        match result {
            Ok(r) => r,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Runs `f` on the value if the scope is still open and nobody else is using it.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, ScopeError> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(ScopeError::Busy);
        }
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let _release = Release(&self.busy);
        let p = self.value.load(Ordering::SeqCst);
        if p.is_null() {
            return Err(ScopeError::Finished);
        }
        // SAFETY: p is non-null only inside `run`, whose `&mut T` borrow is live; `busy` makes
        // this the only reference handed out, and `run` waits for it before the borrow ends.
        Ok(f(unsafe { &mut *p }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_reachable_only_inside_the_scope() {
        let mut n = 1;
        let kept = Scoped::run(&mut n, |s| {
            assert_eq!(
                s.with(|v| {
                    *v += 1;
                    *v
                }),
                Ok(2)
            );
            s.clone()
        });
        assert_eq!(n, 2);
        assert_eq!(kept.with(|v| *v), Err(ScopeError::Finished));
    }

    #[test]
    fn nested_use_is_refused() {
        let mut n = 0;
        Scoped::run(&mut n, |s| {
            let inner = s.with(|_| s.with(|_| ()));
            assert_eq!(inner, Ok(Err(ScopeError::Busy)));
        });
    }
}
