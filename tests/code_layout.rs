//! The functions a running server executes are linked together at the start of the module's
//! code (build.rs, src/hot-symbols.txt), serving code before start-up code, and each process
//! unmaps the module's code once its start-up is over, so each Apache process maps few pages.

mod common;

use std::collections::HashMap;
use std::process::Command;

/// Text symbols of the built module: name → (address, size).
fn text_symbols() -> HashMap<String, (u64, u64)> {
    let out = Command::new("nm")
        .args(["--defined-only", "-S"])
        .arg(common::module_path())
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success(), "nm failed: {:?}", out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (addr, size, kind, name) =
                (words.next()?, words.next()?, words.next()?, words.next()?);
            if !matches!(kind, "t" | "T") {
                return None;
            }
            let number = |w: &str| u64::from_str_radix(w, 16).ok();
            Some((name.to_string(), (number(addr)?, number(size)?)))
        })
        .collect()
}

const LISTED: &str = include_str!("../src/hot-symbols.txt");

/// Whether src/hot-symbols.txt was made by the Rust that builds this checkout. The names carry
/// hashes that change with the compiler: made by another Rust, the list cannot match, and only
/// needs making again (the module works, with more memory).
fn made_by_this_rustc() -> bool {
    let made_by = LISTED
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ");
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .expect("rustc runs");
    let rustc = String::from_utf8_lossy(&rustc.stdout);
    if rustc.trim() != made_by {
        eprintln!(
            "src/hot-symbols.txt was made by {made_by:?}, this is {:?}: not checked; \
             run scripts/hot-symbols.sh",
            rustc.trim()
        );
    }
    rustc.trim() == made_by
}

#[test]
fn executed_functions_are_linked_together() {
    if !made_by_this_rustc() {
        return;
    }
    let listed = LISTED;
    let symbols = text_symbols();
    let names: Vec<&str> = listed
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let found: Vec<(u64, u64)> = names
        .iter()
        .filter_map(|name| symbols.get(*name).copied())
        .collect();
    assert!(
        found.len() * 100 >= names.len() * 75,
        "only {} of the {} functions of src/hot-symbols.txt are in the module: \
         run scripts/hot-symbols.sh to list them again",
        found.len(),
        names.len()
    );
    // Identical functions can be folded into one address: count each address once.
    let mut spans: Vec<(u64, u64)> = found;
    spans.sort();
    spans.dedup_by_key(|(addr, _)| *addr);
    let code: u64 = spans.iter().map(|(_, size)| size).sum();
    let start = spans.first().unwrap().0;
    let end = spans.iter().map(|(addr, size)| addr + size).max().unwrap();
    assert!(
        end - start <= code + code / 4 + 4096,
        "the {} listed functions ({} bytes of code) are spread over {} bytes of the module \
         (is build.rs passing --symbol-ordering-file to the linker?)",
        spans.len(),
        code,
        end - start
    );
}

/// A function a running server executes that the list leaves out costs a whole 64 KiB block of
/// code in every tree (one helper added without listing it again cost 64 KiB; the PLT, which
/// the module's C shims and every thread-local access call through, sat alone at the end of the
/// code and cost 32 KiB more), and so does start-up code a process keeps mapped (before
/// `release_start_up_code`, 128 KiB in embedded mode, 168 KiB in daemon mode).
/// `scripts/hot-symbols.sh --check` serves the profile's requests in both modes and fails if any
/// process maps module code outside the blocks of the listed serving functions. An embedded-mode
/// tree that has served only requests that succeed must also keep to the first two groups of the
/// list and to two blocks (128 KiB; C mod_wsgi's tree maps 136-144 KiB): with the code of failing
/// requests and the daemon side's request I/O among them, it mapped four, and before the code
/// started a block, three. In every mode the tree
/// may map only the first 64 KiB block of the module's constants (src/hot-rodata.txt). Checked for this
/// checkout's build only: a build for another Python has other symbols.
#[test]
fn a_running_server_maps_only_the_listed_code() {
    if std::env::var_os("MOD_WSGI_SO").is_some() {
        eprintln!("not this checkout's build: not checked");
        return;
    }
    if !made_by_this_rustc() {
        return;
    }
    assert!(
        common::is_root(),
        "needs root: the page maps of Apache's processes"
    );
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/hot-symbols.sh"
    ))
    .arg("--check")
    .arg(common::module_path())
    .env("PORT", common::free_port().to_string())
    .output()
    .expect("run scripts/hot-symbols.sh --check");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("embedded-normal mode: ")
            && said.contains("embedded mode: ")
            && said.contains("daemon mode: "),
        "{said}"
    );
}

/// `release_start_up_code` unmaps the module's read-only segments after start-up, which is only
/// harmless because their pages are all the file's: a text relocation would make the loader
/// write into one, and unmapping it would bring back the unrelocated bytes.
#[test]
fn the_module_has_no_text_relocations() {
    let text = readelf(&["--dynamic", "--wide"]);
    assert!(text.contains("(FLAGS)"), "no dynamic section read:\n{text}");
    assert!(!text.contains("TEXTREL"), "{text}");
}

#[test]
fn relative_relocations_are_packed() {
    // build.rs asks for DT_RELR where the C library can load it (glibc 2.36+); the table of
    // 24-byte entries it replaces is read by the loader into every Apache process.
    let glibc = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .expect("getconf runs");
    let glibc = String::from_utf8_lossy(&glibc.stdout);
    let version: Vec<u32> = glibc
        .split_whitespace()
        .nth(1)
        .unwrap_or("0.0")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    if version < vec![2, 36] {
        eprintln!("glibc {glibc:?} cannot load DT_RELR: not checked");
        return;
    }
    let text = readelf(&["--dynamic", "--section-headers", "--wide"]);
    assert!(text.contains("(RELR)"), "no DT_RELR entry:\n{text}");
    let rela_size = text
        .lines()
        .find(|l| l.contains(".rela.dyn"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == ".rela.dyn")?;
            u64::from_str_radix(words.get(at + 4)?, 16).ok()
        })
        .expect(".rela.dyn listed");
    assert!(rela_size < 16 * 1024, ".rela.dyn still {rela_size} bytes");
}

/// What `readelf` with `flags` says of the module.
fn readelf(flags: &[&str]) -> String {
    let out = Command::new("readelf")
        .args(flags)
        .arg(common::module_path())
        .output()
        .expect("readelf (binutils) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The address of section `name` in `readelf --section-headers` output `sections`.
fn section_address(sections: &str, name: &str) -> Option<u64> {
    section_extent(sections, name).map(|(address, _)| address)
}

/// The address and size of section `name` in `readelf --section-headers` output `sections`.
fn section_extent(sections: &str, name: &str) -> Option<(u64, u64)> {
    sections.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let at = words.iter().position(|w| *w == name)?;
        let number = |i: usize| u64::from_str_radix(words.get(at + i)?, 16).ok();
        Some((number(2)?, number(4)?))
    })
}

/// The kernel maps a shared library's pages in 64 KiB blocks around each page a process
/// touches, aligned on the address. build.rs links with 64 KiB segment alignment, so the loader
/// puts the module on a 64 KiB boundary and the blocks fall the same way in every process and
/// every load (the code the list puts first starts a block), and it puts the exception tables,
/// which only a panic reads, after `.rodata` instead of before it, so touching constants does
/// not map them. Measured (scripts/memory-by-mapping.sh): 64 KiB less code and 64 KiB less
/// read-only data mapped by the tree.
#[test]
fn the_module_loads_on_64_kib_blocks_with_its_exception_tables_last_and_its_plt_first() {
    let segments = readelf(&["--segments", "--wide"]);
    let loads: Vec<&str> = segments
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .collect();
    assert!(!loads.is_empty(), "{segments}");
    for load in &loads {
        assert!(
            load.trim_end().ends_with("0x10000"),
            "not 64 KiB aligned: {load}"
        );
    }
    // The code starts a block (`-z separate-code`), so the listed functions fill whole blocks:
    // begun 24 KiB into one, the serving code of an embedded tree took three blocks, not two.
    let code = loads
        .iter()
        .find(|l| l.contains(" R E "))
        .unwrap_or_else(|| panic!("no code segment in:\n{segments}"));
    let code_address = code
        .split_whitespace()
        .nth(2)
        .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no address in {code}"));
    assert_eq!(code_address % 0x10000, 0, "code not on a block: {code}");
    let sections = readelf(&["--section-headers", "--wide"]);
    let address = |name: &str| {
        section_address(&sections, name).unwrap_or_else(|| panic!("no {name} in:\n{sections}"))
    };
    let (rodata, eh_frame, except) = (
        address(".rodata"),
        address(".eh_frame"),
        address(".gcc_except_table"),
    );
    assert!(
        rodata < eh_frame && eh_frame < except,
        ".rodata {rodata:#x}, .eh_frame {eh_frame:#x}, .gcc_except_table {except:#x}"
    );
    // The PLT (calls from the C shims, thread-local accesses) sits before the code, beside the
    // listed functions, not alone after the cold code.
    if sections.contains(" .plt ") {
        let (plt, text) = (address(".plt"), address(".text"));
        assert!(plt < text, ".plt {plt:#x}, .text {text:#x}");
    }
}

/// build.rs puts `.rodata` at the start of the module, with the constants the serving code reads
/// first (src/hot-rodata.txt), so that they lie in the first 64 KiB block; behind the symbol
/// tables and relocations (26 KB, which only the loader reads while it loads the module), they
/// spilled into a second block that every Apache process mapped (64 KiB more read-only data in
/// an embedded-mode tree, measured by scripts/memory-by-mapping.sh). The symbol hash table stays
/// in front: each library loaded later (a Python extension module) looks its symbols up in it.
/// `scripts/hot-symbols.sh --check` checks the blocks a running tree maps.
#[test]
fn the_module_starts_with_its_constants() {
    let sections = readelf(&["--section-headers", "--wide"]);
    let address = |name: &str| section_address(&sections, name);
    let (hash, rodata, dynsym) = (
        address(".gnu.hash"),
        address(".rodata").expect(".rodata listed"),
        address(".dynsym").expect(".dynsym listed"),
    );
    assert!(
        rodata < dynsym && hash.is_none_or(|hash| hash < rodata),
        ".gnu.hash {hash:?}, .rodata {rodata:#x}, .dynsym {dynsym:#x}:\n{sections}"
    );
    assert!(
        rodata < 0x1000,
        "constants start at {rodata:#x}, not at the module's start"
    );
}

/// The dynamic symbols of an ELF file: those it defines (`defined`) or those it imports.
fn dynamic_symbols(path: &str, defined: bool) -> Vec<String> {
    let out = Command::new("nm")
        .arg("-D")
        .arg(if defined {
            "--defined-only"
        } else {
            "--undefined-only"
        })
        .arg(path)
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success(), "nm -D {path} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// Where the dynamic loader finds `library` for the built module (`ldd`).
fn resolved_library(library: &str) -> String {
    let out = Command::new("ldd")
        .arg(common::module_path())
        .output()
        .expect("ldd runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let (name, rest) = line.trim().split_once(" => ")?;
            (name == library).then(|| rest.split_whitespace().next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("ldd does not list {library} for the module: {out:?}"))
}

#[test]
fn the_module_calls_nothing_in_libm() {
    // A process's first call into libm resolves the symbol and runs code beside large tables:
    // the kernel maps about 150 KiB of libm into that process, in each daemon process and each
    // child that loads a script (MD5's sine table was computed with `sin` until it was written
    // out). libc's own exports are left out: those resolve to libc.
    let libc: std::collections::HashSet<String> =
        dynamic_symbols(&resolved_library("libc.so.6"), true)
            .into_iter()
            .collect();
    let libm: std::collections::HashSet<String> =
        dynamic_symbols(&resolved_library("libm.so.6"), true)
            .into_iter()
            .filter(|name| !libc.contains(name))
            .collect();
    let module = common::module_path();
    let calls: Vec<String> = dynamic_symbols(module.to_str().unwrap(), false)
        .into_iter()
        .filter(|name| libm.contains(name))
        .collect();
    assert!(calls.is_empty(), "the module imports {calls:?} from libm");
}

/// A debugger's breakpoints are writes into the module's code pages, which every process unmaps
/// once its start-up is over (`release_start_up_code`): that would drop them without a word. A
/// process that is being traced keeps its pages, so a breakpoint on the request handler, set
/// before Apache starts, stops the first request. Needs gdb (scripts/test.sh installs it).
#[test]
fn a_breakpoint_set_before_apache_starts_stops_a_request() {
    if std::env::var_os("MOD_WSGI_SO").is_some() {
        eprintln!("not this checkout's build: not checked");
        return;
    }
    let handler = text_symbols()
        .into_keys()
        .find(|name| name.contains("6apache5hooks7handler17h"))
        .expect("the module's handler hook is a symbol of its own");
    let dir = common::temp_dir("gdb-breakpoint");
    let script = dir.join("hello.wsgi");
    std::fs::write(
        &script,
        "def application(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'hi']\n",
    )
    .unwrap();
    let port = common::free_port();
    let conf = dir.join("httpd.conf");
    let extra = format!("WSGIScriptAlias /hello {}", script.display());
    std::fs::write(
        &conf,
        common::config_text(&dir, port, &common::Options::default(), &extra),
    )
    .unwrap();
    let gdb = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "set breakpoint pending on"])
        .args([
            "-ex",
            &format!("break {handler}"),
            "-ex",
            "run",
            "-ex",
            "bt 1",
        ])
        .args(["--args", common::APACHE, "-X", "-d"])
        .arg(&dir)
        .arg("-f")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut gdb = gdb.expect("gdb runs (scripts/test.sh installs it)");
    // The request stops at the breakpoint; gdb then prints the frame and ends, and Apache with it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut asked = false;
    let ended = loop {
        if let Some(status) = gdb.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        if !asked {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let timeout = std::time::Duration::from_millis(500);
            if let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) {
                use std::io::Write;
                let _ = stream.write_all(b"GET /hello HTTP/1.0\r\n\r\n");
                asked = true;
                // Dropped at once: the handler runs (and stops) whether or not anyone waits.
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    if ended.is_none() {
        let _ = gdb.kill();
        let _ = gdb.wait();
    }
    // Apache ends with gdb; if gdb did not end it (the breakpoint never stopped it), stop it.
    if let Ok(pid) = std::fs::read_to_string(dir.join("httpd.pid")) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            if common::process_alive(pid) {
                // SAFETY: signalling the Apache this test started (pid from its own PidFile).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let out = gdb.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        asked,
        "Apache under gdb never answered on port {port}:\n{said}"
    );
    assert!(
        said.contains("hit Breakpoint 1"),
        "the request did not stop at the breakpoint:\n{said}"
    );
}

/// The module's writable data that every process writes (its statics: locks, counters,
/// `OnceLock`s, and `.bss` after them) lies on one 4 KiB page, so each process that writes it
/// keeps one private page, not two: build.rs puts std's cache for symbolising backtraces, most
/// of a page that nothing serving touches, before it on a page of its own. Measured
/// (scripts/memory-by-mapping.sh): the module's writable data in an embedded tree 24 → 12 KiB
/// (C: 24), in daemon mode 44-48 → 24 KiB (C: 31-32).
#[test]
fn the_data_every_process_writes_is_on_one_page() {
    let sections = readelf(&["--section-headers", "--wide"]);
    let extent = |name: &str| {
        section_extent(&sections, name).unwrap_or_else(|| panic!("no {name} in:\n{sections}"))
    };
    let (data, data_size) = extent(".data");
    let (bss, bss_size) = extent(".bss");
    let last = bss.max(data + data_size) + bss_size.max(1) - 1;
    assert_eq!(
        data / 4096,
        last / 4096,
        ".data at {data:#x} ({data_size:#x} bytes), .bss at {bss:#x} ({bss_size:#x} bytes): \
         more than one page"
    );
}
