//! Where each Python thread is, in the lines C mod_wsgi logs when a daemon process stops because
//! a request ran past `request-timeout`: the operator's first clue to what the request was stuck
//! on.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The lines describing every thread that is running Python code, in every interpreter:
/// `Thread N executing file "F", line L, in FUNCTION`, then one `called from …` line per caller,
/// outermost last. Each starts with `mod_wsgi (pid=N): `.
pub fn thread_stacks(py: Python<'_>) -> PyResult<Vec<String>> {
    let tag = format!("mod_wsgi (pid={})", std::process::id());
    let frames = py.import("sys")?.call_method0("_current_frames")?;
    let frames = frames.cast::<PyDict>()?;
    let mut lines = vec![format!(
        "{tag}: Dumping stack trace for active Python threads."
    )];
    for (thread, frame) in frames.iter() {
        let thread: u64 = thread.extract()?;
        let mut current = Some(frame);
        let mut innermost = true;
        while let Some(frame) = current {
            let code = frame.getattr("f_code")?;
            let file: String = code.getattr("co_filename")?.extract()?;
            let function: String = code.getattr("co_name")?.extract()?;
            let line: Option<i64> = frame.getattr("f_lineno")?.extract()?;
            let line = line.unwrap_or(0);
            let back = frame.getattr("f_back")?;
            let back = (!back.is_none()).then_some(back);
            lines.push(if innermost {
                format!(
                    "{tag}: Thread {thread} executing file \"{file}\", line {line}, in {function}"
                )
            } else {
                let end = if back.is_some() { ',' } else { '.' };
                format!("{tag}: called from file \"{file}\", line {line}, in {function}{end}")
            });
            innermost = false;
            current = back;
        }
    }
    Ok(lines)
}
