//! Routing: routes compiled from config, matched on host, path, method and
//! headers in file order; the first match wins.

mod path;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::{Config, FixedResponse, RouteConfig};
use crate::metrics::RouteMetrics;
pub(crate) use path::normalize;

/// What a matched route does.
#[derive(Debug)]
pub(crate) enum Action {
    /// Forward to the named upstream (shared: each logged request holds it).
    Upstream(Arc<str>),
    /// Answer with a fixed response.
    Respond(FixedResponse),
}

#[derive(Debug)]
enum HostMatch {
    Exact(String),
    /// `*.example.com` stored as `.example.com`: matches any name ending in it.
    Suffix(String),
}

#[derive(Debug)]
enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
}

/// One compiled route.
#[derive(Debug)]
pub(crate) struct Route {
    /// Position in the config's route list (indexes per-route state such as limiters).
    pub(crate) index: usize,
    /// Name for metrics and logs (shared: each logged request holds it).
    pub(crate) name: Arc<str>,
    /// The route's config, for timeouts, retries and the rest.
    pub(crate) config: RouteConfig,
    /// What to do.
    pub(crate) action: Action,
    /// Request counters and latency for this route.
    pub(crate) metrics: RouteMetrics,
    host: Option<HostMatch>,
    path: PathMatch,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
}

/// All routes, in file order.
#[derive(Debug)]
pub(crate) struct Router {
    routes: Vec<Route>,
    /// Metrics for requests that match no route.
    pub(crate) unmatched: RouteMetrics,
}

impl Router {
    /// Compile the routes of a validated config.
    pub(crate) fn new(config: &Config) -> Router {
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(index, rc)| compile(index, rc))
            .collect();
        Router {
            routes,
            unmatched: RouteMetrics::new("none"),
        }
    }

    /// Whether some route names `host` explicitly (exact or wildcard).
    pub(crate) fn routes_host(&self, host: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.host.as_ref().is_some_and(|h| host_matches(h, host)))
    }

    /// The routes, in file order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The route at `index`, as [`index_of`](Self::index_of) gave it.
    pub(crate) fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// Where `route` (one of this router's, by address) stands, so that an
    /// owned handle (`Arc<State>` + index) can find it again later.
    pub(crate) fn index_of(&self, route: &Route) -> Option<usize> {
        self.routes.iter().position(|r| std::ptr::eq(r, route))
    }

    /// The first route matching the request, if any. `path` must be normalized.
    pub(crate) fn find(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.matches(method, host, path, headers))
    }
}

fn compile(index: usize, rc: &RouteConfig) -> Route {
    let host = rc.host.as_ref().map(|h| {
        let h = h.to_ascii_lowercase();
        match h.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
            None => HostMatch::Exact(h),
        }
    });
    let path = match (&rc.path, &rc.path_prefix) {
        (Some(p), _) => PathMatch::Exact(p.clone()),
        (None, Some(p)) => PathMatch::Prefix(p.clone()),
        (None, None) => PathMatch::Any,
    };
    let methods = rc
        .methods
        .iter()
        .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .collect();
    let headers = rc
        .headers
        .iter()
        .filter_map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
            let value = if v == "*" {
                None
            } else {
                Some(HeaderValue::from_str(v).ok()?)
            };
            Some((name, value))
        })
        .collect();
    let action = match (&rc.upstream, &rc.respond) {
        (_, Some(fixed)) => Action::Respond(fixed.clone()),
        (Some(up), None) => Action::Upstream(Arc::from(up.as_str())),
        // validate() refuses this; answer 502 rather than panic if it slips through.
        (None, None) => Action::Respond(FixedResponse {
            status: 502,
            headers: Default::default(),
            body: String::new(),
        }),
    };
    let name = route_name(index, rc);
    Route {
        index,
        metrics: RouteMetrics::new(&name),
        name: Arc::from(name),
        config: rc.clone(),
        action,
        host,
        path,
        methods,
        headers,
    }
}

/// The name of the route at `index`: its `name`, or `route<index>`.
pub(crate) fn route_name(index: usize, rc: &RouteConfig) -> String {
    rc.name.clone().unwrap_or_else(|| format!("route{index}"))
}

fn host_matches(m: &HostMatch, host: &str) -> bool {
    match m {
        HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
        HostMatch::Suffix(s) => {
            host.len() > s.len() && host.to_ascii_lowercase().ends_with(s.as_str())
        }
    }
}

impl Route {
    fn matches(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> bool {
        if let Some(m) = &self.host {
            match host {
                Some(h) if host_matches(m, h) => {}
                _ => return false,
            }
        }
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
        };
        if !path_ok {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        self.headers.iter().all(|(name, want)| match want {
            None => headers.contains_key(name),
            Some(v) => headers.get_all(name).iter().any(|got| got == v),
        })
    }

    /// The path to send upstream, after strip/rewrite of the prefix:
    /// `path` itself when the route changes nothing.
    pub(crate) fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        let Some(prefix) = &self.config.path_prefix else {
            return Cow::Borrowed(path);
        };
        let Some(rest) = path.strip_prefix(prefix.as_str()) else {
            return Cow::Borrowed(path);
        };
        if let Some(new) = &self.config.rewrite_prefix {
            let mut out = new.clone();
            if !out.ends_with('/') && !rest.is_empty() && !rest.starts_with('/') {
                out.push('/');
            }
            out.push_str(rest);
            return Cow::Owned(out);
        }
        if self.config.strip_prefix {
            return if rest.starts_with('/') {
                Cow::Borrowed(rest)
            } else {
                Cow::Owned(format!("/{rest}"))
            };
        }
        Cow::Borrowed(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(toml: &str) -> Router {
        let cfg = Config::parse(toml, "test").expect("valid config");
        Router::new(&cfg)
    }

    const CFG: &str = r#"
        [upstreams.a]
        targets = ["127.0.0.1:1"]
        [[routes]]
        name = "exact"
        path = "/ping"
        respond = { body = "pong" }
        [[routes]]
        name = "wild"
        host = "*.example.com"
        path_prefix = "/api/"
        upstream = "a"
        strip_prefix = true
        [[routes]]
        name = "post-json"
        methods = ["POST"]
        headers = { "content-type" = "application/json" }
        upstream = "a"
        [[routes]]
        name = "rewrite"
        path_prefix = "/old/"
        rewrite_prefix = "/new/"
        upstream = "a"
    "#;

    fn find<'a>(
        r: &'a Router,
        m: &Method,
        host: Option<&str>,
        path: &str,
        h: &HeaderMap,
    ) -> Option<&'a str> {
        r.find(m, host, path, h).map(|r| &*r.name)
    }

    #[test]
    fn first_match_in_file_order() {
        let r = router(CFG);
        let h = HeaderMap::new();
        assert_eq!(find(&r, &Method::GET, None, "/ping", &h), Some("exact"));
        assert_eq!(find(&r, &Method::GET, None, "/ping/x", &h), None);
        assert_eq!(
            find(&r, &Method::GET, Some("a.example.com"), "/api/x", &h),
            Some("wild")
        );
        assert_eq!(
            find(&r, &Method::GET, Some("example.com"), "/api/x", &h),
            None
        );
        assert_eq!(
            find(&r, &Method::GET, Some("A.EXAMPLE.COM"), "/api/x", &h),
            Some("wild")
        );
        let mut json = HeaderMap::new();
        json.insert("content-type", HeaderValue::from_static("application/json"));
        assert_eq!(
            find(&r, &Method::POST, None, "/x", &json),
            Some("post-json")
        );
        assert_eq!(find(&r, &Method::GET, None, "/x", &json), None);
        assert_eq!(find(&r, &Method::POST, None, "/x", &h), None);
    }

    #[test]
    fn rewrites_paths() {
        let r = router(CFG);
        let h = HeaderMap::new();
        let wild = r
            .find(&Method::GET, Some("a.example.com"), "/api/users/1", &h)
            .unwrap();
        assert_eq!(wild.upstream_path("/api/users/1"), "/users/1");
        let rw = r.find(&Method::GET, None, "/old/thing", &h).unwrap();
        assert_eq!(rw.upstream_path("/old/thing"), "/new/thing");
    }
}
