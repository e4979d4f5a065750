//! The CGI variables of the last request an interpreter served, kept as `str` objects: most
//! requests repeat most of the names and values (the server's, the script's, the usual headers)
//! in the same order, and reusing a `str` costs a comparison of bytes where decoding one costs an
//! allocation, a copy, a hash when the environ stores it, and a free when the request ends.
//!
//! One list per interpreter (its objects belong to it), compared position by position. `str`
//! objects are immutable, so environs of concurrent requests may share them.

use crate::python::objects::{latin1_str, OwnedRef};
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::sync::Mutex;

/// Values longer than this are decoded for each request: long ones rarely repeat.
const VALUE_MAX: usize = 256;
/// Variables past this many are decoded for each request.
const SLOTS_MAX: usize = 128;

/// Headers whose values are a user's own: not kept beyond their request.
fn private(key: &[u8]) -> bool {
    key == b"HTTP_COOKIE" || key == b"HTTP_AUTHORIZATION" || key == b"HTTP_PROXY_AUTHORIZATION"
}

#[derive(Default)]
pub struct EnvironStrings(Mutex<Vec<Slot>>);

struct Slot {
    key: Vec<u8>,
    key_str: OwnedRef,
    value: Vec<u8>,
    value_str: Option<OwnedRef>,
}

impl Slot {
    fn release(&self, py: Python<'_>) {
        self.key_str.release(py);
        if let Some(v) = &self.value_str {
            v.release(py);
        }
    }
}

/// The strings of one environ being built: position by position against the last request's.
pub struct Lookup<'a> {
    /// None when another thread of the interpreter holds the list (it let go of the GIL in the
    /// middle of an environ, which building one does not do): everything is decoded then.
    slots: Option<std::sync::MutexGuard<'a, Vec<Slot>>>,
    next: usize,
}

impl EnvironStrings {
    pub fn lookup(&self) -> Lookup<'_> {
        Lookup {
            slots: self.0.try_lock().ok(),
            next: 0,
        }
    }

    /// Gives the strings back; called while attached, before the interpreter goes.
    pub fn release(&self, py: Python<'_>) {
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for slot in slots.drain(..) {
            slot.release(py);
        }
    }
}

impl Lookup<'_> {
    /// The next variable's name and value as `str`.
    pub fn strings<'py>(
        &mut self,
        py: Python<'py>,
        key: &[u8],
        value: &[u8],
    ) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyString>)> {
        let at = self.next;
        self.next += 1;
        let Some(slots) = self.slots.as_deref_mut().filter(|_| at < SLOTS_MAX) else {
            return Ok((latin1_str(py, key)?, latin1_str(py, value)?));
        };
        if slots.get(at).is_none_or(|s| s.key != key) {
            // Interned: an application's `environ['PATH_INFO']` then finds it by identity.
            let key_str = match std::str::from_utf8(key) {
                Ok(ascii) if key.is_ascii() => PyString::intern(py, ascii),
                _ => latin1_str(py, key)?,
            };
            let slot = Slot {
                key: key.to_vec(),
                key_str: OwnedRef::new(key_str.into_any()),
                value: Vec::new(),
                value_str: None,
            };
            if at < slots.len() {
                std::mem::replace(&mut slots[at], slot).release(py);
            } else {
                slots.push(slot);
            }
        }
        let slot = &mut slots[at];
        let key_str = slot.key_str.bind(py).cast::<PyString>()?.to_owned();
        if let Some(value_str) = slot.value_str.as_ref().filter(|_| slot.value == value) {
            return Ok((key_str, value_str.bind(py).cast::<PyString>()?.to_owned()));
        }
        let value_str = latin1_str(py, value)?;
        if value.len() <= VALUE_MAX && !private(key) {
            if let Some(old) = slot
                .value_str
                .replace(OwnedRef::new(value_str.clone().into_any()))
            {
                old.release(py);
            }
            slot.value.clear();
            slot.value.extend_from_slice(value);
        }
        Ok((key_str, value_str))
    }
}
