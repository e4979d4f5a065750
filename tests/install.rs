//! scripts/install.sh lays out the module and its Debian config files, apxs-style.

mod common;

use std::process::Command;

fn run_install(root: &std::path::Path) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh"))
        .env("DESTDIR", root)
        .env("MODULE", common::module_path())
        .output()
        .expect("run scripts/install.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn installs_beside_debians_module_with_a_load_file() {
    let root = common::temp_dir("install");
    let out = run_install(&root);
    let so = root.join("usr/lib/apache2/modules/mod_wsgi_rs.so");
    assert_eq!(
        std::fs::read(&so).unwrap(),
        std::fs::read(common::module_path()).unwrap()
    );
    assert!(
        !root.join("usr/lib/apache2/modules/mod_wsgi.so").exists(),
        "never over Debian's module"
    );
    let load =
        std::fs::read_to_string(root.join("etc/apache2/mods-available/wsgi_rs.load")).unwrap();
    assert!(
        load.contains("LoadModule wsgi_module /usr/lib/apache2/modules/mod_wsgi_rs.so"),
        "{load}"
    );
    assert!(
        load.lines().any(|l| l == "# Conflicts: wsgi"),
        "a2enmod refuses to enable both: {load}"
    );
    assert!(root
        .join("etc/apache2/mods-available/wsgi_rs.conf")
        .exists());
    assert!(out.contains("a2enmod wsgi_rs"), "{out}");
}

#[test]
fn warns_when_the_c_module_is_enabled() {
    let root = common::temp_dir("install-conflict");
    std::fs::create_dir_all(root.join("etc/apache2/mods-enabled")).unwrap();
    std::fs::write(
        root.join("etc/apache2/mods-enabled/wsgi.load"),
        "LoadModule wsgi_module x\n",
    )
    .unwrap();
    let out = run_install(&root);
    assert!(
        out.contains("the C mod_wsgi is enabled") && out.contains("a2dismod wsgi"),
        "{out}"
    );
}
