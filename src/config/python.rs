//! The global settings of the embedded Python (`WSGIPythonOptimize`, `WSGIRestrictStdin`, …):
//! what each directive records, and the checks made on its value by `apache2 -t`, so that a value
//! CPython would refuse never reaches a child process (where CPython would exit it).

use super::pick;

/// `WSGIPythonHashSeed`: `random`, or the fixed seed for `str`/`bytes` hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashSeed {
    Random,
    Fixed(u32),
}

/// What the global Python directives set; `None` (or empty) when a directive is absent.
/// Only the main server's values are used: the directives are refused in a `<VirtualHost>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PythonOptions {
    pub optimize: Option<u32>,
    pub dont_write_bytecode: Option<bool>,
    /// `WSGIPythonWarnings`, in the order given (each occurrence adds one).
    pub warnings: Vec<String>,
    pub hash_seed: Option<HashSeed>,
    pub eggs: Option<String>,
    pub restrict_stdin: Option<bool>,
    pub restrict_stdout: Option<bool>,
    pub restrict_signal: Option<bool>,
    /// `WSGIRestrictEmbedded On`: no application runs in Apache's own children.
    pub restrict_embedded: Option<bool>,
    pub verbose_debugging: Option<bool>,
    pub destroy_interpreter: Option<bool>,
    pub per_interpreter_gil: Option<bool>,
    /// `WSGICaseSensitivity`: Off names a script's module after its path in lower case, so
    /// that paths differing only in case load one module (a case-insensitive file system).
    pub case_sensitive: Option<bool>,
}

/// Defaults when the directive is absent: what C mod_wsgi 4.9.4 does, which for stdin and
/// stdout is not what its documentation says (it has left both alone by default since 3.0).
pub const DEFAULT_RESTRICT_STDIN: bool = false;
pub const DEFAULT_RESTRICT_STDOUT: bool = false;
pub const DEFAULT_RESTRICT_SIGNAL: bool = true;
pub const DEFAULT_DESTROY_INTERPRETER: bool = true;

impl PythonOptions {
    pub fn merge(base: &PythonOptions, add: &PythonOptions) -> PythonOptions {
        PythonOptions {
            optimize: pick(&add.optimize, &base.optimize),
            dont_write_bytecode: pick(&add.dont_write_bytecode, &base.dont_write_bytecode),
            warnings: if add.warnings.is_empty() {
                base.warnings.clone()
            } else {
                add.warnings.clone()
            },
            hash_seed: pick(&add.hash_seed, &base.hash_seed),
            eggs: pick(&add.eggs, &base.eggs),
            restrict_stdin: pick(&add.restrict_stdin, &base.restrict_stdin),
            restrict_stdout: pick(&add.restrict_stdout, &base.restrict_stdout),
            restrict_signal: pick(&add.restrict_signal, &base.restrict_signal),
            restrict_embedded: pick(&add.restrict_embedded, &base.restrict_embedded),
            verbose_debugging: pick(&add.verbose_debugging, &base.verbose_debugging),
            case_sensitive: pick(&add.case_sensitive, &base.case_sensitive),
            destroy_interpreter: pick(&add.destroy_interpreter, &base.destroy_interpreter),
            per_interpreter_gil: pick(&add.per_interpreter_gil, &base.per_interpreter_gil),
        }
    }
}

/// `WSGIPerInterpreterGIL On` gives sub-interpreters a GIL of their own (PEP 684), which CPython
/// has only since 3.12; `python` is the version (`major.minor`) the module was built for.
pub fn check_per_interpreter_gil(name: &str, on: bool, python: &str) -> Result<(), String> {
    let minor = python
        .strip_prefix("3.")
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    if on && minor < 12 {
        return Err(format!(
            "{name} On needs Python 3.12 or later (a GIL per sub-interpreter, PEP 684, is new \
             in 3.12); this mod_wsgi-rs is built for Python {python}"
        ));
    }
    Ok(())
}

/// `WSGIPythonOptimize`: CPython's `-O` count (0 none, 1 drops asserts, 2 also docstrings).
pub fn parse_optimize(name: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|&n| i32::try_from(n).is_ok())
        .ok_or_else(|| {
            format!("{name} must be a whole number of 0 or more (0, 1 or 2), not '{value}'")
        })
}

/// `WSGIPythonHashSeed`: checked as CPython checks `PYTHONHASHSEED`, whose failure at start-up
/// would end the child process.
pub fn parse_hash_seed(name: &str, value: &str) -> Result<HashSeed, String> {
    if value == "random" {
        return Ok(HashSeed::Random);
    }
    // Digits only: CPython reads the seed with strtoul, which would also take a sign or spaces.
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(seed) = value.parse::<u32>() {
            return Ok(HashSeed::Fixed(seed));
        }
    }
    Err(format!(
        "{name} must be \"random\" or an integer in range [0; 4294967295], not '{value}'"
    ))
}

/// `WSGIPythonWarnings`: a `-W` filter, `action:message:category:module:lineno`. The checks are
/// those Python's `warnings` module makes without importing anything (it only reports a bad
/// option on stderr and ignores it); whether the category exists is known only at start-up.
pub fn check_warning_option(name: &str, value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split(':').map(str::trim).collect();
    if parts.len() > 5 {
        return Err(format!(
            "{name} '{value}': too many fields (at most 5: action:message:category:module:lineno)"
        ));
    }
    let action = parts[0];
    const ACTIONS: [&str; 6] = ["default", "always", "ignore", "module", "once", "error"];
    // As in warnings._getaction: empty means default, and an action may be abbreviated.
    if !(action.is_empty() || action == "all" || ACTIONS.iter().any(|a| a.starts_with(action))) {
        return Err(format!(
            "{name} '{value}': invalid action '{action}' (one of {})",
            ACTIONS.join(", ")
        ));
    }
    if let Some(lineno) = parts.get(4).filter(|l| !l.is_empty()) {
        if lineno.replace('_', "").parse::<u64>().is_err() {
            return Err(format!("{name} '{value}': invalid line number '{lineno}'"));
        }
    }
    Ok(())
}

/// Why `WSGILazyInitialization Off` cannot be honoured.
pub const EAGER_INITIALIZATION_REFUSED: &str =
    "WSGILazyInitialization Off is not supported by mod_wsgi-rs: Python never starts in the \
     Apache parent process (which runs as root and reloads the module on every restart), only \
     in each child process, as with WSGILazyInitialization On";

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn per_interpreter_gil_needs_python_3_12() {
        let name = "WSGIPerInterpreterGIL";
        assert!(check_per_interpreter_gil(name, true, "3.12").is_ok());
        assert!(check_per_interpreter_gil(name, true, "3.13").is_ok());
        assert!(check_per_interpreter_gil(name, false, "3.11").is_ok());
        let e = check_per_interpreter_gil(name, true, "3.11").unwrap_err();
        assert!(
            e.starts_with("WSGIPerInterpreterGIL On needs Python 3.12"),
            "{e}"
        );
        assert!(e.ends_with("built for Python 3.11"), "{e}");
    }

    #[test]
    fn merge_keeps_the_main_servers_settings() {
        let main = PythonOptions {
            optimize: Some(1),
            warnings: vec!["error".into()],
            restrict_signal: Some(false),
            ..Default::default()
        };
        let vhost = PythonOptions::default();
        assert_eq!(PythonOptions::merge(&main, &vhost), main);
    }

    #[test]
    fn abbreviated_and_empty_warning_actions_are_python_s() {
        for ok in ["", "d", "ign", "all", "module::ImportWarning", "once:::m:0"] {
            assert_eq!(check_warning_option("W", ok), Ok(()), "{ok}");
        }
        assert!(check_warning_option("W", "x").is_err());
    }
}
