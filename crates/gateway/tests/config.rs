//! Config loading: each kind of config error is reported with its exact key
//! path and line; a file with several problems reports all of them in file
//! order; the example config is valid; and the loader never panics on
//! arbitrary input.

use proptest::prelude::*;
use sluice_gateway::{Config, ConfigError};

/// Join lines, so that a test's line numbers are its array positions + 1.
fn text(lines: &[&str]) -> String {
    lines.join("\n")
}

/// Every problem of an invalid config as (path, line, message).
fn problems(lines: &[&str]) -> Vec<(String, Option<usize>, String)> {
    match Config::parse(&text(lines), "t.toml") {
        Ok(_) => panic!("config should be invalid:\n{}", text(lines)),
        Err(e) => e
            .problems()
            .iter()
            .map(|p| (p.path.clone(), p.line, p.message.clone()))
            .collect(),
    }
}

/// The single problem of a config, checked for path and line; returns the message.
fn one(lines: &[&str], path: &str, line: usize) -> String {
    let got = problems(lines);
    assert_eq!(got.len(), 1, "expected one problem, got {got:#?}");
    let (p, l, m) = got.into_iter().next().unwrap();
    assert_eq!((p.as_str(), l), (path, Some(line)), "message: {m}");
    m
}

const UP: [&str; 2] = ["[upstreams.api]", "targets = [\"127.0.0.1:8081\"]"];

/// UP, then `rest`.
fn with_up<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    UP.iter().copied().chain(rest.iter().copied()).collect()
}

#[test]
fn unknown_key_names_it_and_lists_the_expected_ones() {
    let m = one(
        &with_up(&[
            "[[routes]]",
            "upstream = \"api\"",
            "[[routes]]",
            "upstream = \"api\"",
            "timout = \"5s\"",
        ]),
        "routes[1].timout",
        7,
    );
    assert!(m.contains("unknown key `timout`"), "{m}");
    assert!(
        m.contains("`timeout`") && m.contains("`try_timeout`"),
        "{m}"
    );
}

#[test]
fn unknown_section() {
    let m = one(
        &["[server]", "[sever]", "listen = \"127.0.0.1:1\""],
        "sever",
        2,
    );
    assert!(m.contains("`server`") && m.contains("`routes`"), "{m}");
}

#[test]
fn bad_duration_rate_and_size() {
    let got = problems(&with_up(&[
        "[[routes]]",
        "upstream = \"api\"",
        "timeout = \"10 parsecs\"",
        "rate_limit = { rate = \"5 per second\" }",
        "[cache]",
        "max_size = \"lots\"",
    ]));
    let paths: Vec<_> = got.iter().map(|(p, l, _)| (p.as_str(), *l)).collect();
    assert_eq!(
        paths,
        vec![
            ("routes[0].timeout", Some(5)),
            ("routes[0].rate_limit.rate", Some(6)),
            ("cache.max_size", Some(8)),
        ]
    );
    assert!(got[0].2.contains("invalid duration"), "{}", got[0].2);
    assert!(got[1].2.contains("invalid rate"), "{}", got[1].2);
    assert!(got[2].2.contains("invalid size"), "{}", got[2].2);
}

#[test]
fn a_dropped_required_key_is_reported_once() {
    // `rate` is invalid and dropped; the "missing rate" that follows is not news.
    one(
        &with_up(&[
            "[[routes]]",
            "upstream = \"api\"",
            "rate_limit = { rate = \"fast\" }",
        ]),
        "routes[0].rate_limit.rate",
        5,
    );
}

#[test]
fn wrong_type() {
    let m = one(
        &with_up(&["[[routes]]", "upstream = \"api\"", "retries = \"2\""]),
        "routes[0].retries",
        5,
    );
    assert!(m.contains("invalid type"), "{m}");
}

#[test]
fn unknown_enum_value() {
    let m = one(
        &[
            "[upstreams.api]",
            "targets = [\"127.0.0.1:1\"]",
            "balance = \"random\"",
        ],
        "upstreams.api.balance",
        3,
    );
    assert!(m.contains("least_request"), "{m}");
}

#[test]
fn missing_required_key() {
    let m = one(
        &["[upstreams.api]", "balance = \"round_robin\""],
        "upstreams.api",
        1,
    );
    assert!(m.contains("`targets`"), "{m}");
}

#[test]
fn route_naming_a_missing_upstream() {
    let m = one(
        &with_up(&["[[routes]]", "upstream = \"apy\""]),
        "routes[0].upstream",
        4,
    );
    assert!(m.contains("\"apy\"") && m.contains("api"), "{m}");
}

#[test]
fn route_naming_an_invalid_upstream_is_not_reported_twice() {
    // The upstream is reported (no targets); the route naming it is fine.
    one(
        &["[upstreams.api]", "[[routes]]", "upstream = \"api\""],
        "upstreams.api",
        1,
    );
}

#[test]
fn duplicate_route_names() {
    let m = one(
        &[
            "[[routes]]",
            "name = \"a\"",
            "respond = {}",
            "[[routes]]",
            "name = \"a\"",
            "respond = {}",
        ],
        "routes[1].name",
        5,
    );
    assert!(m.contains("routes[0]"), "{m}");
}

#[test]
fn route_with_neither_or_both_actions() {
    one(&["[[routes]]", "path = \"/\""], "routes[0]", 1);
    one(
        &with_up(&["[[routes]]", "upstream = \"api\"", "respond = {}"]),
        "routes[0].respond",
        5,
    );
}

#[test]
fn paths_must_be_rooted_and_normalized() {
    one(
        &["[[routes]]", "respond = {}", "path_prefix = \"api/\""],
        "routes[0].path_prefix",
        3,
    );
    let m = one(
        &["[[routes]]", "respond = {}", "path = \"/a//b\""],
        "routes[0].path",
        3,
    );
    assert!(m.contains("\"/a/b\""), "{m}");
}

#[test]
fn strip_and_rewrite_need_a_prefix() {
    one(
        &[
            "[[routes]]",
            "respond = {}",
            "path = \"/a\"",
            "strip_prefix = true",
        ],
        "routes[0].strip_prefix",
        4,
    );
    one(
        &["[[routes]]", "respond = {}", "rewrite_prefix = \"/b/\""],
        "routes[0].rewrite_prefix",
        3,
    );
}

#[test]
fn host_patterns() {
    for bad in [
        "api.*.com",
        "*example.com",
        "a b",
        "api.example.com:8080",
        "*",
    ] {
        let line = format!("host = {bad:?}");
        one(&["[[routes]]", "respond = {}", &line], "routes[0].host", 3);
    }
    Config::parse("[[routes]]\nrespond = {}\nhost = \"*.Example.com\"", "t").unwrap();
}

#[test]
fn method_names() {
    one(
        &[
            "[[routes]]",
            "respond = {}",
            "methods = [\"GET\", \"PO ST\"]",
        ],
        "routes[0].methods[1]",
        3,
    );
    one(
        &["[[routes]]", "respond = {}", "methods = [\"connect\"]"],
        "routes[0].methods[0]",
        3,
    );
}

#[test]
fn header_names_and_values() {
    one(
        &[
            "[[routes]]",
            "respond = {}",
            "headers = { \"x y\" = \"1\" }",
        ],
        "routes[0].headers.\"x y\"",
        3,
    );
    one(
        &[
            "[[routes]]",
            "respond = { headers = { \"x-a\" = \"bad\\nvalue\" } }",
        ],
        "routes[0].respond.headers.x-a",
        2,
    );
}

#[test]
fn respond_status_range() {
    one(
        &["[[routes]]", "respond = { status = 700 }"],
        "routes[0].respond.status",
        2,
    );
}

#[test]
fn upstream_targets() {
    one(&["[upstreams.a]", "targets = []"], "upstreams.a.targets", 2);
    let got = problems(&[
        "[upstreams.a]",
        "targets = [",
        "  \"127.0.0.1:1\",",
        "  5,",
        "  \"no-port\",",
        "  \"https://x:1\",",
        "]",
    ]);
    let paths: Vec<_> = got.iter().map(|(p, l, _)| (p.as_str(), *l)).collect();
    // Element 1 has the wrong type and is dropped; the elements after it keep their file index.
    assert_eq!(
        paths,
        vec![
            ("upstreams.a.targets[1]", Some(4)),
            ("upstreams.a.targets[2]", Some(5)),
            ("upstreams.a.targets[3]", Some(6)),
        ]
    );
}

#[test]
fn hash_balancing_needs_hash_on() {
    one(
        &["[upstreams.a]", "targets = [\"h:1\"]", "balance = \"hash\""],
        "upstreams.a.balance",
        3,
    );
    one(
        &[
            "[upstreams.a]",
            "targets = [\"h:1\"]",
            "hash_on = \"client_ip\"",
        ],
        "upstreams.a.hash_on",
        3,
    );
    one(
        &[
            "[upstreams.a]",
            "targets = [\"h:1\"]",
            "balance = \"hash\"",
            "hash_on = \"cookie:x\"",
        ],
        "upstreams.a.hash_on",
        4,
    );
    Config::parse(
        "[upstreams.a]\ntargets = [\"h:1\"]\nbalance = \"hash\"\nhash_on = \"header:x-user\"",
        "t",
    )
    .unwrap();
}

#[test]
fn health_and_ejection() {
    let got = problems(&[
        "[upstreams.a]",
        "targets = [\"h:1\"]",
        "health = { path = \"healthz\", rise = 0, interval = \"0s\" }",
        "eject = { max_percent = 150 }",
    ]);
    let paths: Vec<_> = got.iter().map(|(p, l, _)| (p.as_str(), *l)).collect();
    assert_eq!(
        paths,
        vec![
            ("upstreams.a.health.path", Some(3)),
            ("upstreams.a.health.interval", Some(3)),
            ("upstreams.a.health.rise", Some(3)),
            ("upstreams.a.eject.max_percent", Some(4)),
        ]
    );
}

#[test]
fn rate_limit_key_and_burst() {
    let m = one(
        &[
            "[[routes]]",
            "respond = {}",
            "rate_limit = { key = \"client_ip+cookie:x\", rate = \"1/s\" }",
        ],
        "routes[0].rate_limit.key",
        3,
    );
    assert!(m.contains("\"cookie:x\""), "{m}");
    one(
        &[
            "[[routes]]",
            "respond = {}",
            "rate_limit = { rate = \"1/s\", burst = 2000000 }",
        ],
        "routes[0].rate_limit.burst",
        3,
    );
    Config::parse(
        "[[routes]]\nrespond = {}\nrate_limit = { key = \"header:x-api-key+route\", rate = \"1/s\" }",
        "t",
    )
    .unwrap();
}

#[test]
fn tls_files() {
    one(
        &["[server.tls]", "cert = \"/nonexistent/cert.pem\""],
        "server.tls.cert",
        2,
    );
    // A readable cert with an unreadable key: only the key is reported.
    let cert = tempfile::NamedTempFile::new().unwrap();
    let cert_line = format!("cert = {:?}", cert.path().display().to_string());
    let m = one(
        &["[server.tls]", &cert_line, "key = \"/nonexistent/key.pem\""],
        "server.tls.key",
        3,
    );
    assert!(m.contains("cannot read /nonexistent/key.pem"), "{m}");
}

#[test]
fn tls_missing_files_are_each_reported() {
    let got = problems(&[
        "[server.tls]",
        "cert = \"/nonexistent/cert.pem\"",
        "key = \"/nonexistent/key.pem\"",
    ]);
    assert_eq!(got.len(), 2, "{got:#?}");
}

#[test]
fn listeners_must_differ() {
    one(
        &[
            "[server]",
            "listen = \"0.0.0.0:9000\"",
            "[admin]",
            "listen = \"127.0.0.1:9000\"",
        ],
        "admin.listen",
        4,
    );
}

#[test]
fn timeouts() {
    one(
        &with_up(&["[[routes]]", "upstream = \"api\"", "timeout = \"0s\""]),
        "routes[0].timeout",
        5,
    );
    one(
        &with_up(&[
            "[[routes]]",
            "upstream = \"api\"",
            "timeout = \"1s\"",
            "try_timeout = \"2s\"",
        ]),
        "routes[0].try_timeout",
        6,
    );
}

#[test]
fn cache_object_size_within_total() {
    one(
        &[
            "[cache]",
            "max_size = \"1MiB\"",
            "max_object_size = \"2MiB\"",
        ],
        "cache.max_object_size",
        3,
    );
}

#[test]
fn redis_url_scheme() {
    one(
        &["[rate_limit]", "redis = \"http://127.0.0.1:6379\""],
        "rate_limit.redis",
        2,
    );
    Config::parse("[rate_limit]\nredis = \"rediss://r.example:6380/0\"", "t").unwrap();
}

#[test]
fn proxy_headers_switches() {
    let c = Config::parse("[proxy_headers]\nvia = false\nrequest_id = false", "t").unwrap();
    assert!(!c.proxy_headers.via && !c.proxy_headers.request_id);
    assert!(c.proxy_headers.x_forwarded_for && c.proxy_headers.x_forwarded_host);
    let m = one(
        &["[proxy_headers]", "via = false", "x_forwarded = false"],
        "proxy_headers.x_forwarded",
        3,
    );
    assert!(m.contains("x_forwarded_for"), "{m}");
    one(
        &["[proxy_headers]", "request_id = \"no\""],
        "proxy_headers.request_id",
        2,
    );
}

#[test]
fn syntax_errors_have_lines() {
    let got = problems(&["[server]", "listen = ", "[admin]"]);
    assert_eq!(got[0].0, "<toml>");
    assert_eq!(got[0].1, Some(2));
}

#[test]
fn several_problems_are_all_reported_in_file_order() {
    let lines = [
        "[server]",                    // 1
        "listen = \"127.0.0.1:8080\"", // 2
        "idle_timeout = \"forever\"",  // 3
        "[upstreams.api]",             // 4
        "targets = [\"localhost\"]",   // 5
        "balanse = \"round_robin\"",   // 6
        "[[routes]]",                  // 7
        "upstream = \"nope\"",         // 8
        "[[routes]]",                  // 9
        "upstream = \"api\"",          // 10
        "timout = \"5s\"",             // 11
        "retries = -1",                // 12
        "[cache]",                     // 13
        "max_size = \"12XB\"",         // 14
    ];
    let got = problems(&lines);
    let paths: Vec<_> = got.iter().map(|(p, l, _)| (p.as_str(), *l)).collect();
    assert_eq!(
        paths,
        vec![
            ("server.idle_timeout", Some(3)),
            ("upstreams.api.targets[0]", Some(5)),
            ("upstreams.api.balanse", Some(6)),
            ("routes[0].upstream", Some(8)),
            ("routes[1].timout", Some(11)),
            ("routes[1].retries", Some(12)),
            ("cache.max_size", Some(14)),
        ]
    );
    // And the rendered error is one `FILE:LINE: PATH: message` per problem.
    let err = Config::parse(&text(&lines), "gw.toml").unwrap_err();
    let rendered = err.to_string();
    assert_eq!(rendered.lines().count(), 7, "{rendered}");
    assert!(
        rendered
            .lines()
            .next()
            .unwrap()
            .starts_with("gw.toml:3: server.idle_timeout: invalid duration"),
        "{rendered}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway.toml");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.routes.is_empty());
}

#[test]
fn unreadable_file() {
    let err = Config::load(std::path::Path::new("/nonexistent/gw.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn an_empty_or_blank_file_is_refused_but_empty_text_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    for blank in ["", "\n\n", " \t\r\n "] {
        std::fs::write(&path, blank).unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Empty { .. }), "{blank:?}: {err}");
        assert_eq!(err.file(), path.display().to_string());
        assert!(err.problems().is_empty());
        let message = err.to_string();
        assert!(
            message.starts_with(&path.display().to_string()) && message.contains("empty"),
            "{message}"
        );
        // Text given in code is no half-written file: it stays a config without routes.
        assert!(Config::parse(blank, "t.toml").unwrap().routes.is_empty());
    }
    // Comments make a file deliberate: it loads.
    std::fs::write(&path, "# nothing routed yet\n").unwrap();
    assert!(Config::load(&path).unwrap().routes.is_empty());
}

/// A line of TOML-ish text: section headers, known and unknown keys, good and bad values.
fn toml_line() -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "[server]",
        "[admin]",
        "[[routes]]",
        "[upstreams.a]",
        "[upstreams.\"b c\"]",
        "[cache]",
        "[rate_limit]",
        "[access_log]",
        "[proxy_headers]",
        "[server.tls]",
        "[[server.tls.certs]]",
        "[bogus]",
        "[routes]",
    ])
    .prop_map(str::to_owned);
    let key = prop::sample::select(vec![
        "listen",
        "timeout",
        "try_timeout",
        "path",
        "path_prefix",
        "upstream",
        "targets",
        "retries",
        "rate_limit",
        "balance",
        "hash_on",
        "health",
        "respond",
        "max_size",
        "max_object_size",
        "name",
        "host",
        "methods",
        "headers",
        "cert",
        "key",
        "names",
        "eject",
        "redis",
        "x",
    ]);
    let value = prop::sample::select(vec![
        "\"10s\"",
        "\"0s\"",
        "\"/a\"",
        "\"a\"",
        "5",
        "-1",
        "700",
        "true",
        "[\"127.0.0.1:1\", 3]",
        "[]",
        "{ path = \"/h\", rise = 0 }",
        "{ rate = \"1/s\", burst = 3 }",
        "{ rate = 1 }",
        "{ status = 700, headers = { \"a b\" = \"c\" } }",
        "\"1MiB\"",
        "\"redis://\"",
        "1979-05-27T07:32:00Z",
        "{",
        "\"unterminated",
    ]);
    prop_oneof![
        header,
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~]{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn loader_never_panics_and_lines_are_in_the_file(lines in prop::collection::vec(toml_line(), 0..25)) {
        let text = lines.join("\n");
        let line_count = text.split('\n').count();
        if let Err(e) = Config::parse(&text, "p.toml") {
            prop_assert!(!e.problems().is_empty());
            let mut last = 0;
            for p in e.problems() {
                let line = p.line;
                prop_assert!(line.is_some_and(|l| (1..=line_count).contains(&l)), "{p} in\n{text}");
                let line = line.unwrap_or(0);
                prop_assert!(line >= last, "not in file order: {e}");
                last = line;
            }
        }
    }

    #[test]
    fn loader_never_panics_on_any_text(text in "\\PC{0,200}") {
        let _ = Config::parse(&text, "p.toml");
    }
}
