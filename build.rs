//! Finds Apache's and APR's headers with `apxs -q`, generates the bindings from `wrapper.h`,
//! compiles the brigade shim, and records libpython's directory as an rpath so a module built for
//! a pyenv Python finds its libpython when Apache loads it.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn apxs_query(apxs: &str, var: &str) -> String {
    let out = Command::new(apxs)
        .args(["-q", var])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{apxs} -q {var}` ({e}); install apache2-dev or set APXS=/path/to/apxs"
            )
        });
    if !out.status.success() {
        panic!(
            "`{apxs} -q {var}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=src/apache/shim.c");
    println!("cargo:rerun-if-env-changed=APXS");

    let apxs = env::var("APXS").unwrap_or_else(|_| "apxs".to_string());
    let mut include_dirs: Vec<String> = Vec::new();
    for var in ["INCLUDEDIR", "APR_INCLUDEDIR", "APU_INCLUDEDIR"] {
        let dir = apxs_query(&apxs, var);
        if !dir.is_empty() && !include_dirs.contains(&dir) {
            include_dirs.push(dir);
        }
    }
    // EXTRA_CPPFLAGS carries -D_GNU_SOURCE -D_REENTRANT …, which change struct layouts in APR.
    let defines: Vec<String> = apxs_query(&apxs, "EXTRA_CPPFLAGS")
        .split_whitespace()
        .filter(|f| f.starts_with("-D"))
        .map(str::to_string)
        .collect();

    let mut shim = cc::Build::new();
    shim.file("src/apache/shim.c").warnings(true);
    for dir in &include_dirs {
        shim.include(dir);
    }
    for d in &defines {
        let d = &d[2..];
        match d.split_once('=') {
            Some((k, v)) => shim.define(k, Some(v)),
            None => shim.define(d, None),
        };
    }
    // The module is loaded into httpd, which provides every ap_*/apr_* symbol: never link libapr.
    shim.cargo_metadata(true).compile("mod_wsgi_rs_shim");

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("ap_.*|apr_.*|mod_wsgi_rs_.*")
        .allowlist_type("request_rec|server_rec|conn_rec|module|command_rec|cmd_parms|process_rec")
        .allowlist_type("ap_.*|apr_.*|authn_provider|authz_provider|authn_status|authz_status")
        .allowlist_var("MODULE_MAGIC_.*|OK|DECLINED|DONE|HTTP_.*|M_.*|APLOG_.*|OR_.*|ACCESS_CONF")
        .allowlist_var(
            "RSRC_CONF|EXEC_ON_READ|GLOBAL_ONLY|NOT_IN_.*|OPT_.*|AP_.*|APR_.*|REQUEST_.*|SATISFY_.*|REMOTE_.*",
        )
        .allowlist_var(
            "ap_server_.*|ap_top_module|ap_prelinked_modules|unixd_config|ap_unixd_config",
        )
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false);
    for dir in &include_dirs {
        builder = builder.clang_arg(format!("-I{dir}"));
    }
    for d in &defines {
        builder = builder.clang_arg(d);
    }
    let bindings = builder
        .generate()
        .expect("bindgen over wrapper.h failed (is libclang-dev installed?)");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings
        .write_to_file(out)
        .expect("cannot write bindings.rs");

    order_hot_code();

    // Lets a module built for a pyenv (or other non-system) Python find its libpython at load time.
    pyo3_build_config::add_libpython_rpath_link_args();
    // `#[cfg(Py_3_12)]` and friends, for the version-dependent C API (sub-interpreters).
    pyo3_build_config::use_pyo3_cfgs();
    let cfg = pyo3_build_config::get();
    let ver = cfg.version();
    println!(
        "cargo:rustc-env=MOD_WSGI_RS_BUILT_FOR_PYTHON={}.{}",
        ver.major, ver.minor
    );
    // Without WSGIPythonHome, Python finds its prefix from this interpreter's path (as if it
    // were running), not from Apache's executable.
    println!(
        "cargo:rustc-env=MOD_WSGI_RS_PYTHON_EXECUTABLE={}",
        cfg.executable().unwrap_or("python3")
    );
}

/// Asks the linker to put the functions a running server executes (src/hot-symbols.txt, written
/// by scripts/hot-symbols.sh) together at the start of `.text`. The kernel maps a library's code
/// into a process in 64 KiB blocks around each page touched; spread out, the 190 KB that run
/// touched every block of the 800 KB, and each Apache process mapped nearly all of it.
fn order_hot_code() {
    println!("cargo:rerun-if-changed=src/hot-symbols.txt");
    // The option is LLD's, which rustc links with by default on this target since Rust 1.90;
    // GNU ld would refuse it, so anything else goes without (and only costs memory).
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let minor = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace()
                .nth(1)?
                .split('.')
                .nth(1)?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let default_linker = !flags.contains("linker") && env::var_os("RUSTC_LINKER").is_none();
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || minor < 90
        || !default_linker
    {
        println!(
            "cargo:warning=not ordering hot code: needs rustc's own LLD (Rust 1.90+, x86_64 Linux)"
        );
        return;
    }
    let list = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/hot-symbols.txt");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    // Names the build no longer has (after an edit or a Rust upgrade) are skipped quietly;
    // tests/code_layout.rs tells when the list needs making again.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
    // The kernel maps a library's pages into a process in 64 KiB blocks around each page touched
    // (fault-around), aligned on the address. Segments aligned to 64 KiB make the loader put the
    // module on such a boundary (glibc 2.35+), so the blocks fall the same way in every load;
    // `separate-code` starts the code segment on one, so the listed code fills whole blocks (it
    // had begun 24 KiB into one, whatever the constants before it added up to). The exception
    // tables, which only a panic reads, go
    // after `.rodata` and `.eh_frame` instead of before `.rodata`, so a constant read does not
    // map them. The PLT, which the C shims and every thread-local access (`__tls_get_addr`) call
    // through, goes before `.text`, beside the listed code, instead of alone after the cold
    // code, where it cost a block of its own. `.rodata` starts the module, with the constants
    // the serving code reads first (see `hot_constants`). tests/code_layout.rs checks all four.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,max-page-size=65536");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,separate-code");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let script = out_dir.join("code-layout.ld");
    std::fs::write(
        &script,
        format!(
            "SECTIONS {{ .gcc_except_table : {{ *(.gcc_except_table .gcc_except_table.*) }} }} \
             INSERT AFTER .eh_frame;\n\
             SECTIONS {{ .plt : {{ *(.plt) }} }} INSERT BEFORE .text;\n{}{}",
            hot_constants(),
            writable_data()
        ),
    )
    .expect("cannot write the linker script");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", script.display());
    // Which input section holds which constant, for scripts/hot-symbols.sh.
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,-Map={}",
        out_dir.join("module.map").display()
    );
    pack_relative_relocations();
}

/// The linker script's part that puts the constants a serving process reads in the module's first
/// 64 KiB block. A process that once read constants in both blocks `.rodata` spanned mapped both
/// for the rest of its life. First come the symbol hash table (every library loaded later, such as
/// a Python extension module, looks its symbols up in it), then `.rodata`: the strings and the
/// constants merged by size (the linker cannot split them), then the sections of
/// src/hot-rodata.txt (written by scripts/hot-symbols.sh: those the serving code refers to), then
/// the rest. The symbol tables and relocations, which only the loader reads while it loads the
/// module, follow.
fn hot_constants() -> String {
    println!("cargo:rerun-if-changed=src/hot-rodata.txt");
    let list = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/hot-rodata.txt");
    let names: Vec<String> = std::fs::read_to_string(list)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let hot = if names.is_empty() {
        String::new()
    } else {
        format!("*({})", names.join(" "))
    };
    format!(
        "SECTIONS {{ .gnu.hash : {{ *(.gnu.hash) }} \
         .rodata : {{ *(.rodata.str* .rodata.cst*) {hot} *(.rodata .rodata.*) }} }} \
         INSERT BEFORE .dynsym;\n"
    )
}

/// The linker script's part that keeps the module's writable data that every process writes (its
/// statics: locks, counters, `OnceLock`s, and the `.bss` after them) on one page. Each process
/// that writes a page of it gets a copy of its own; the data was 4.4 KB over two pages, so every
/// Apache child, daemon process and supervisor kept two. Most of a page of it is std's cache for
/// symbolising backtraces (2.3 KB), which nothing serving touches: it goes first, on a page of
/// its own, and the rest starts the next.
fn writable_data() -> &'static str {
    "SECTIONS { .data.unused : { *(.data.*MAPPINGS_CACHE*) . = ALIGN(4096); } } \
     INSERT BEFORE .data;\n"
}

/// Stores the module's relative relocations (the addresses in vtables and static tables that the
/// loader adjusts) as DT_RELR bitmaps, a few KiB instead of 54 KiB of `.rela.dyn` that the loader
/// reads into every Apache process. The loader must know DT_RELR: glibc 2.36 (Debian 12) or later.
fn pack_relative_relocations() {
    let glibc = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let version = text.split_whitespace().nth(1)?.to_string();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        });
    match glibc {
        Some(version) if version >= (2, 36) => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs")
        }
        _ => println!("cargo:warning=not packing relocations: needs glibc 2.36+"),
    }
}
