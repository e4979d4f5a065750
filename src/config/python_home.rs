//! `WSGIPythonHome` must name a Python of the version the module is built for: a 3.12 standard
//! library under a 3.11 libpython fails in obscure ways (or half works), so a home whose version
//! can be read is checked by `apache2 -t`. A home whose version cannot be read is left to Python,
//! whose start-up error is logged by the child.

use std::path::Path;

/// Whether the home is a virtual environment or a plain prefix, and its `major.minor` version.
#[derive(Debug, PartialEq, Eq)]
pub enum HomeVersion {
    VirtualEnvironment(String),
    Prefix(String),
    Unknown,
}

/// `major.minor` of a version such as `3.12.1` or virtualenv's `3.8.10.final.0`.
fn major_minor(version: &str) -> Option<String> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse::<u32>().ok()?;
    let minor = parts.next()?.parse::<u32>().ok()?;
    Some(format!("{major}.{minor}"))
}

/// Reads the version of the Python at `home`: a virtual environment's from its `pyvenv.cfg`
/// (`version`, or virtualenv's `version_info`), a prefix's from its `lib/pythonX.Y/os.py`.
pub fn home_version(home: &str, built_for: &str) -> HomeVersion {
    let root = Path::new(home);
    if let Ok(cfg) = std::fs::read_to_string(root.join("pyvenv.cfg")) {
        let version = cfg.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            matches!(key.trim(), "version" | "version_info")
                .then(|| major_minor(value))
                .flatten()
        });
        return version.map_or(HomeVersion::Unknown, HomeVersion::VirtualEnvironment);
    }
    let has_stdlib = |version: &str| root.join(format!("lib/python{version}/os.py")).is_file();
    if has_stdlib(built_for) {
        return HomeVersion::Prefix(built_for.to_string());
    }
    let mut found: Vec<String> = std::fs::read_dir(root.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = major_minor(name.strip_prefix("python")?)?;
            has_stdlib(&version).then_some(version)
        })
        .collect();
    found.sort();
    match found.as_slice() {
        [only] => HomeVersion::Prefix(only.clone()),
        _ => HomeVersion::Unknown,
    }
}

/// Refuses a home that is a Python of another version than `built_for` (`major.minor`).
pub fn check_python_home(name: &str, home: &str, built_for: &str) -> Result<(), String> {
    let (what, version) = match home_version(home, built_for) {
        HomeVersion::VirtualEnvironment(v) => ("virtual environment", v),
        HomeVersion::Prefix(v) => ("prefix", v),
        HomeVersion::Unknown => return Ok(()),
    };
    if version == built_for {
        return Ok(());
    }
    Err(format!(
        "{name} '{home}' is a Python {version} {what}, but this mod_wsgi-rs is built for Python \
         {built_for}: name a Python {built_for} {what}, or build the module for Python {version} \
         (PYO3_PYTHON=/path/to/python{version} cargo build --release)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mwrs-home-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn with_stdlib(dir: &Path, version: &str) {
        let lib = dir.join(format!("lib/python{version}"));
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("os.py"), "").unwrap();
    }

    #[test]
    fn a_virtual_environment_says_its_version_in_pyvenv_cfg() {
        let dir = temp("venv");
        std::fs::write(
            dir.join("pyvenv.cfg"),
            "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.12.1\n",
        )
        .unwrap();
        let home = dir.to_str().unwrap();
        assert_eq!(
            home_version(home, "3.11"),
            HomeVersion::VirtualEnvironment("3.12".into())
        );
        let e = check_python_home("WSGIPythonHome", home, "3.11").unwrap_err();
        assert!(
            e.starts_with(&format!(
                "WSGIPythonHome '{home}' is a Python 3.12 virtual environment, but this \
                 mod_wsgi-rs is built for Python 3.11"
            )),
            "{e}"
        );
        assert_eq!(check_python_home("WSGIPythonHome", home, "3.12"), Ok(()));
        std::fs::write(dir.join("pyvenv.cfg"), "version_info = 3.8.10.final.0\n").unwrap();
        assert_eq!(
            home_version(home, "3.11"),
            HomeVersion::VirtualEnvironment("3.8".into())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_prefix_is_known_by_its_standard_library() {
        let dir = temp("prefix");
        let home = dir.to_str().unwrap().to_string();
        assert_eq!(home_version(&home, "3.11"), HomeVersion::Unknown);
        with_stdlib(&dir, "3.13");
        assert_eq!(
            home_version(&home, "3.11"),
            HomeVersion::Prefix("3.13".into())
        );
        let e = check_python_home("WSGIPythonHome", &home, "3.11").unwrap_err();
        assert!(e.contains("is a Python 3.13 prefix"), "{e}");
        // The built-for version wins when a prefix has several.
        with_stdlib(&dir, "3.11");
        assert_eq!(check_python_home("WSGIPythonHome", &home, "3.11"), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_or_missing_home_is_left_to_python() {
        assert_eq!(
            check_python_home("WSGIPythonHome", "/nonexistent/home", "3.11"),
            Ok(())
        );
    }
}
