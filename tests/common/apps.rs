//! WSGI applications the integration tests serve, as source text.
#![allow(dead_code)]

/// Echoes what the tests look at, as `key=value` lines.
pub const ENVIRON: &str = r#"
import sys
def application(environ, start_response):
    keys = sorted(k for k in environ if isinstance(environ[k], str))
    lines = ["%s=%s" % (k, environ[k]) for k in keys]
    lines.append("wsgi.version=%r" % (environ["wsgi.version"],))
    lines.append("wsgi.multithread=%r" % environ["wsgi.multithread"])
    lines.append("wsgi.multiprocess=%r" % environ["wsgi.multiprocess"])
    lines.append("wsgi.run_once=%r" % environ["wsgi.run_once"])
    lines.append("wsgi.input_terminated=%r" % environ["wsgi.input_terminated"])
    lines.append("types=%s" % ",".join(sorted({type(v).__name__ for k, v in environ.items() if "." not in k})))
    lines.append("python=%d.%d" % sys.version_info[:2])
    lines.append("prefix=%s" % sys.prefix)
    body = ("\n".join(lines) + "\n").encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain; charset=latin-1"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// Parses the ENVIRON app's output into (key, value) pairs.
pub fn parse_environ(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn environ_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
