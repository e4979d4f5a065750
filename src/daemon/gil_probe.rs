//! The probe behind `deadlock-timeout`: a thread that takes and gives back the GIL of the main
//! interpreter once a second and notes each success in the process's [`Activity`]; the monitor
//! (`timers`) stops the process when no success has been noted for the limit.
//!
//! The probe only runs between Python's start and [`GilProbe::stop`], which the process calls
//! before finalising Python: attaching to a finalised runtime would crash or hang the thread.
//!
//! [`Activity`]: super::timers::Activity

use super::timers::POLL;
use super::worker::{State, StopReason};
use crate::python;
use std::sync::{Arc, Mutex};

/// A running probe; dropping it without [`GilProbe::stop`] leaves it running.
pub struct GilProbe {
    /// Held while the probe is attached; true once the probe must not attach again.
    stopped: Arc<Mutex<bool>>,
}

impl GilProbe {
    /// Starts the probe if deadlock-timeout is set. Python must be running.
    pub fn spawn(deadlock_timeout: std::time::Duration, state: Arc<State>) -> Option<GilProbe> {
        if deadlock_timeout.is_zero() {
            return None;
        }
        let stopped = Arc::new(Mutex::new(false));
        let flag = stopped.clone();
        // The timer counts from the probe's start, as C's does.
        state.activity.gil_acquired();
        std::thread::Builder::new()
            .name("wsgi:gil-probe".into())
            .spawn(move || probe(&flag, &state))
            .ok()?;
        Some(GilProbe { stopped })
    }

    /// Makes sure the probe never attaches again. Waits for an attachment in progress, which
    /// only takes long if some thread keeps the GIL, in which case finalising Python would not
    /// get it either (the process's reaper ends it).
    pub fn stop(self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

fn probe(stopped: &Mutex<bool>, state: &State) {
    loop {
        std::thread::sleep(POLL);
        let held = stopped.lock().unwrap_or_else(|p| p.into_inner());
        // Once the process shuts down the monitor no longer looks, so neither does the probe.
        if *held || state.reason() == StopReason::Shutdown {
            return;
        }
        if python::attached(|_| ()).is_err() {
            return;
        }
        drop(held);
        state.activity.gil_acquired();
    }
}
