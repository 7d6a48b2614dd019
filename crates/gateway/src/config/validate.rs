//! Semantic checks of a deserialized config: everything that can be known
//! wrong without running it — names that point nowhere, values out of range,
//! patterns the router cannot match, files that cannot be read.
//!
//! Each check reports the key path it is about; the loader turns paths into
//! lines.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use http::{HeaderName, HeaderValue, Method};

use super::{
    Balance, Config, Dur, FixedResponse, HealthConfig, RouteConfig, RouteRateLimit, ServerConfig,
    TlsConfig, UpstreamConfig,
};
use sluice_tomlspan::KeyPath;

/// One semantic problem.
#[derive(Clone, Debug)]
pub(crate) struct Issue {
    /// The key it is about.
    pub(crate) path: KeyPath,
    /// What is wrong.
    pub(crate) message: String,
    /// Keys whose values decide this check. When the loader had to drop one
    /// of them (it was itself invalid), the check says nothing more.
    pub(crate) concerns: Vec<KeyPath>,
}

/// Largest `burst` accepted: beyond this a limiter no longer limits anything useful.
pub(crate) const MAX_BURST: u32 = 1_000_000;

#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn push(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push(Issue {
            concerns: vec![path.clone()],
            path,
            message: message.into(),
        });
    }

    fn push_about(&mut self, path: KeyPath, concerns: Vec<KeyPath>, message: impl Into<String>) {
        self.0.push(Issue {
            path,
            message: message.into(),
            concerns,
        });
    }

    fn positive(&mut self, path: KeyPath, d: Dur) {
        if d.0.is_zero() {
            self.push(path, "must be longer than zero");
        }
    }
}

/// Check `config`. `upstream_names` are the upstreams named in the file,
/// including any that failed to deserialize (so that routes naming them are
/// not reported twice).
pub(crate) fn check(config: &Config, upstream_names: &BTreeSet<String>) -> Vec<Issue> {
    let mut out = Issues::default();
    let root = KeyPath::root();
    server(&config.server, &root.key("server"), &mut out);
    admin(config, &mut out);
    for (name, up) in &config.upstreams {
        upstream(up, &root.key("upstreams").key(name), &mut out);
    }
    routes(config, upstream_names, &mut out);
    cache(config, &mut out);
    rate_limit(config, &mut out);
    if config.access_log.buffer == 0 {
        out.push(root.key("access_log").key("buffer"), "must be at least 1");
    }
    out.0
}

fn server(s: &ServerConfig, at: &KeyPath, out: &mut Issues) {
    out.positive(at.key("header_read_timeout"), s.header_read_timeout);
    out.positive(at.key("idle_timeout"), s.idle_timeout);
    for (key, v) in [
        ("max_headers", s.max_headers as u64),
        ("max_header_size", s.max_header_size.0),
        ("max_connections", u64::from(s.max_connections)),
        (
            "max_connections_per_ip",
            u64::from(s.max_connections_per_ip),
        ),
    ] {
        if v == 0 {
            out.push(at.key(key), "must be at least 1");
        }
    }
    if let Some(tls) = &s.tls {
        self::tls(tls, &at.key("tls"), out);
    }
}

fn readable(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn tls(t: &TlsConfig, at: &KeyPath, out: &mut Issues) {
    match (&t.cert, &t.key) {
        (Some(c), Some(k)) => {
            if let Err(e) = readable(c) {
                out.push(at.key("cert"), e);
            }
            if let Err(e) = readable(k) {
                out.push(at.key("key"), e);
            }
        }
        (Some(_), None) => out.push(at.key("cert"), "`cert` needs `key` too"),
        (None, Some(_)) => out.push(at.key("key"), "`key` needs `cert` too"),
        (None, None) => {
            if t.certs.is_empty() {
                out.push_about(
                    at.clone(),
                    vec![at.key("cert"), at.key("key"), at.key("certs")],
                    "TLS needs a certificate: set `cert` and `key`, or `[[server.tls.certs]]`",
                );
            }
        }
    }
    for (i, c) in t.certs.iter().enumerate() {
        let at = at.key("certs").index(i);
        if c.names.is_empty() {
            out.push(at.key("names"), "list at least one SNI name");
        }
        for (j, name) in c.names.iter().enumerate() {
            if let Err(e) = host_pattern(name) {
                out.push(at.key("names").index(j), e);
            }
        }
        if let Err(e) = readable(&c.cert) {
            out.push(at.key("cert"), e);
        }
        if let Err(e) = readable(&c.key) {
            out.push(at.key("key"), e);
        }
    }
}

/// Whether two listen addresses would collide: same port, and the same IP or
/// either on all interfaces. Port 0 (pick any) never collides.
fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn admin(config: &Config, out: &mut Issues) {
    let (a, s) = (config.admin.listen, config.server.listen);
    if config.admin.enabled && collide(a, s) {
        let admin = KeyPath::root().key("admin").key("listen");
        let server = KeyPath::root().key("server").key("listen");
        out.push_about(
            admin.clone(),
            vec![admin, server],
            format!("{a} collides with server.listen {s}; the admin API needs its own address"),
        );
    }
    if config.admin.token.as_deref() == Some("") {
        out.push(
            KeyPath::root().key("admin").key("token"),
            "an empty token would accept `Authorization: Bearer ` — remove the key or set a secret",
        );
    }
}

/// A host pattern: an exact DNS name or `*.` and a DNS name.
pub(crate) fn host_pattern(p: &str) -> Result<(), String> {
    let name = p.strip_prefix("*.").unwrap_or(p);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{p:?} is not a host pattern; expected a DNS name (`api.example.com`) or `*.` and one (`*.example.com`), without port"
        ));
    }
    Ok(())
}

/// A `hash_on` or rate-limit key part naming a header: `header:NAME`.
fn header_spec(spec: &str) -> Option<Result<(), String>> {
    let name = spec.strip_prefix("header:")?;
    Some(
        HeaderName::from_bytes(name.as_bytes())
            .map(drop)
            .map_err(|_| format!("{name:?} is not a valid header name")),
    )
}

fn upstream(u: &UpstreamConfig, at: &KeyPath, out: &mut Issues) {
    if u.targets.is_empty() {
        out.push(at.key("targets"), "list at least one target (`host:port`)");
    }
    for (i, t) in u.targets.iter().enumerate() {
        if let Err(e) = crate::upstream::parse_target(t) {
            out.push(at.key("targets").index(i), e);
        }
    }
    match (u.balance, u.hash_on.as_deref()) {
        (Balance::Hash, None) => out.push(
            at.key("balance"),
            "`balance = \"hash\"` needs `hash_on` (\"client_ip\" or \"header:NAME\")",
        ),
        (Balance::Hash, Some(spec)) => match header_spec(spec) {
            Some(Err(e)) => out.push(at.key("hash_on"), e),
            Some(Ok(())) => {}
            None if spec == "client_ip" => {}
            None => out.push(
                at.key("hash_on"),
                format!("{spec:?} is not \"client_ip\" or \"header:NAME\""),
            ),
        },
        (_, Some(_)) => out.push_about(
            at.key("hash_on"),
            vec![at.key("hash_on"), at.key("balance")],
            "`hash_on` has no effect unless `balance = \"hash\"`",
        ),
        (_, None) => {}
    }
    if let Some(h) = &u.health {
        health(h, &at.key("health"), out);
    }
    let e = &u.eject;
    if e.max_percent > 100 {
        out.push(
            at.key("eject").key("max_percent"),
            format!("{} is over 100 (percent of targets)", e.max_percent),
        );
    }
    if e.consecutive_failures > 0 {
        out.positive(at.key("eject").key("base_time"), e.base_time);
    }
    out.positive(at.key("connect_timeout"), u.connect_timeout);
    out.positive(at.key("pool_idle_timeout"), u.pool_idle_timeout);
}

fn health(h: &HealthConfig, at: &KeyPath, out: &mut Issues) {
    if !h.path.starts_with('/') {
        out.push(at.key("path"), format!("{:?} must start with '/'", h.path));
    } else if h.path.parse::<http::uri::PathAndQuery>().is_err() {
        out.push(at.key("path"), format!("{:?} is not a valid path", h.path));
    }
    out.positive(at.key("interval"), h.interval);
    out.positive(at.key("timeout"), h.timeout);
    if h.rise == 0 {
        out.push(at.key("rise"), "must be at least 1");
    }
    if h.fall == 0 {
        out.push(at.key("fall"), "must be at least 1");
    }
}

fn routes(config: &Config, upstream_names: &BTreeSet<String>, out: &mut Issues) {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in config.routes.iter().enumerate() {
        let at = KeyPath::root().key("routes").index(i);
        if let Some(name) = &r.name {
            if let Some(first) = names.get(name) {
                out.push(
                    at.key("name"),
                    format!("route name {name:?} is already used by routes[{first}]"),
                );
            } else {
                names.insert(name.clone(), i);
            }
        }
        route(r, &at, upstream_names, out);
    }
}

fn route(r: &RouteConfig, at: &KeyPath, upstream_names: &BTreeSet<String>, out: &mut Issues) {
    match (&r.upstream, &r.respond) {
        (Some(name), None) => {
            if !upstream_names.contains(name) {
                let known: Vec<&str> = upstream_names.iter().map(String::as_str).collect();
                out.push(
                    at.key("upstream"),
                    format!(
                        "no upstream named {name:?}; defined: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        (None, Some(fixed)) => respond(fixed, &at.key("respond"), out),
        (None, None) => out.push_about(
            at.clone(),
            vec![at.key("upstream"), at.key("respond")],
            "a route needs `upstream` or `respond`",
        ),
        (Some(_), Some(_)) => out.push(
            at.key("respond"),
            "a route has either `upstream` or `respond`, not both",
        ),
    }
    if let Some(h) = &r.host
        && let Err(e) = host_pattern(h)
    {
        out.push(at.key("host"), e);
    }
    for key in ["path", "path_prefix"] {
        let value = if key == "path" {
            &r.path
        } else {
            &r.path_prefix
        };
        let Some(p) = value else { continue };
        if !p.starts_with('/') {
            out.push(at.key(key), format!("{p:?} must start with '/'"));
            continue;
        }
        let n = crate::router::normalize(p);
        // A trailing '/' is kept by normalization, so compare whole strings.
        if n != *p {
            out.push(
                at.key(key),
                format!(
                    "{p:?} never matches: request paths are normalized (to {n:?} here) before matching"
                ),
            );
        }
    }
    if r.path.is_some() && r.path_prefix.is_some() {
        out.push(
            at.key("path_prefix"),
            "set `path` (exact) or `path_prefix`, not both",
        );
    }
    if r.path_prefix.is_none() {
        if r.strip_prefix {
            out.push_about(
                at.key("strip_prefix"),
                vec![at.key("strip_prefix"), at.key("path_prefix")],
                "`strip_prefix` needs `path_prefix`",
            );
        }
        if r.rewrite_prefix.is_some() {
            out.push_about(
                at.key("rewrite_prefix"),
                vec![at.key("rewrite_prefix"), at.key("path_prefix")],
                "`rewrite_prefix` needs `path_prefix`",
            );
        }
    }
    if r.strip_prefix && r.rewrite_prefix.is_some() {
        out.push(
            at.key("strip_prefix"),
            "set `strip_prefix` or `rewrite_prefix`, not both",
        );
    }
    if let Some(p) = &r.rewrite_prefix
        && !p.starts_with('/')
    {
        out.push(
            at.key("rewrite_prefix"),
            format!("{p:?} must start with '/'"),
        );
    }
    if let Some(h) = &r.host_rewrite
        && (h.parse::<http::uri::Authority>().is_err() || h.contains('@'))
    {
        out.push(
            at.key("host_rewrite"),
            format!("{h:?} is not a host or host:port"),
        );
    }
    for (i, m) in r.methods.iter().enumerate() {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Err(_) => out.push(
                at.key("methods").index(i),
                format!("{m:?} is not a method name (a token such as \"GET\")"),
            ),
            Ok(Method::CONNECT) => out.push(
                at.key("methods").index(i),
                "CONNECT is always refused (this is not a forward proxy)",
            ),
            Ok(_) => {}
        }
    }
    for (name, value) in &r.headers {
        let path = at.key("headers").key(name);
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.push(path, format!("{name:?} is not a valid header name"));
        } else if value != "*" && HeaderValue::from_str(value).is_err() {
            out.push(path, format!("{value:?} is not a valid header value"));
        }
    }
    out.positive(at.key("timeout"), r.timeout);
    if let Some(t) = r.try_timeout {
        out.positive(at.key("try_timeout"), t);
        if t > r.timeout {
            out.push_about(
                at.key("try_timeout"),
                vec![at.key("try_timeout"), at.key("timeout")],
                format!(
                    "{t} is longer than the route's total `timeout` ({})",
                    r.timeout
                ),
            );
        }
    }
    if let Some(t) = r.connect_timeout {
        out.positive(at.key("connect_timeout"), t);
    }
    if let Some(rl) = &r.rate_limit {
        rate_limit_rule(rl, &at.key("rate_limit"), out);
    }
}

fn respond(f: &FixedResponse, at: &KeyPath, out: &mut Issues) {
    if !(100..=599).contains(&f.status) {
        out.push(
            at.key("status"),
            format!("{} is not an HTTP status (100..=599)", f.status),
        );
    }
    for (name, value) in &f.headers {
        let path = at.key("headers").key(name);
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.push(path, format!("{name:?} is not a valid header name"));
        } else if HeaderValue::from_str(value).is_err() {
            out.push(path, format!("{value:?} is not a valid header value"));
        }
    }
}

/// Check a rate-limit key: parts `client_ip`, `route` or `header:NAME`, joined by `+`.
pub(crate) fn limit_key(key: &str) -> Result<(), String> {
    // One parser for the syntax: the limiter's own.
    crate::limit::KeySpec::parse(key).map(|_| ())
}

fn rate_limit_rule(rl: &RouteRateLimit, at: &KeyPath, out: &mut Issues) {
    if let Err(e) = limit_key(&rl.key) {
        out.push(at.key("key"), e);
    }
    // Keep every GCRA deadline far from u64 nanosecond overflow, where a
    // limit would silently saturate open.
    const MAX_SPAN_NS: u128 = 100 * 365 * 86_400 * 1_000_000_000;
    let span = rl.rate.interval().as_nanos() * (u128::from(rl.burst) + 1);
    if span > MAX_SPAN_NS {
        out.push(at.clone(), "(burst + 1) / rate spans more than 100 years");
    }
    if rl.burst > MAX_BURST {
        out.push(
            at.key("burst"),
            format!("{} is over the largest burst, {MAX_BURST}", rl.burst),
        );
    }
}

fn cache(config: &Config, out: &mut Issues) {
    let c = &config.cache;
    let at = KeyPath::root().key("cache");
    if c.max_object_size > c.max_size {
        out.push_about(
            at.key("max_object_size"),
            vec![at.key("max_object_size"), at.key("max_size")],
            format!(
                "{} is larger than `max_size` ({})",
                c.max_object_size, c.max_size
            ),
        );
    }
    out.positive(at.key("lock_timeout"), c.lock_timeout);
}

fn rate_limit(config: &Config, out: &mut Issues) {
    let rl = &config.rate_limit;
    let at = KeyPath::root().key("rate_limit");
    if let Some(url) = &rl.redis {
        match url
            .strip_prefix("redis://")
            .or_else(|| url.strip_prefix("rediss://"))
        {
            None => out.push(
                at.key("redis"),
                format!(
                    "{url:?} is not a Redis URL; expected redis://HOST[:PORT][/DB] or rediss://…"
                ),
            ),
            Some("") => out.push(at.key("redis"), "the URL names no host"),
            Some(_) => {}
        }
    }
    out.positive(at.key("redis_timeout"), rl.redis_timeout);
    if rl.max_keys == 0 {
        out.push(at.key("max_keys"), "must be at least 1");
    }
}
