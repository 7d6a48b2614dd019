//! The gateway's shared state: the live configuration (routes, upstreams)
//! behind an `ArcSwap`, swapped whole on reload so that requests in flight
//! finish on the state they started with.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::access_log::AccessLog;
use crate::cache::HttpCache;
use crate::config::{Config, ConfigError};
use crate::limit::{Limits, RedisSlot};
use crate::router::{Action, Router};
use crate::upstream::Upstream;

/// Everything built from one config.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: Arc<Config>,
    pub(crate) router: Router,
    pub(crate) upstreams: HashMap<String, Arc<Upstream>>,
    /// Each route's upstream, indexed like the routes (none for fixed
    /// answers): looked up once here, not hashed by name per request.
    route_upstreams: Vec<Option<Arc<Upstream>>>,
    /// Rate limiters, indexed like the routes.
    pub(crate) limits: Limits,
    /// Cancelled when this state is replaced: stops its health checks.
    retired: CancellationToken,
}

impl State {
    /// The upstream of the route at `index`, if it forwards to one that
    /// is configured.
    pub(crate) fn route_upstream(&self, index: usize) -> Option<&Arc<Upstream>> {
        self.route_upstreams.get(index)?.as_ref()
    }

    fn build(
        config: Config,
        parent: &CancellationToken,
        previous: Option<&State>,
        redis: &RedisSlot,
    ) -> State {
        let retired = parent.child_token();
        let upstreams = config
            .upstreams
            .iter()
            .map(|(name, uc)| {
                let kept = previous
                    .and_then(|p| p.upstreams.get(name))
                    .filter(|old| old.config == *uc)
                    .map(Arc::clone);
                let up = kept.unwrap_or_else(|| Arc::new(Upstream::new(name, uc)));
                // The previous state's checks stop when it retires; these run on.
                up.spawn_health_checks(&retired);
                (name.clone(), up)
            })
            .collect::<HashMap<_, _>>();
        let router = Router::new(&config);
        let route_upstreams = router
            .iter()
            .map(|route| match &route.action {
                Action::Upstream(name) => upstreams.get(&**name).cloned(),
                Action::Respond(_) => None,
            })
            .collect();
        State {
            router,
            limits: Limits::build(&config, previous.map(|p| &p.limits), redis),
            upstreams,
            route_upstreams,
            config: Arc::new(config),
            retired,
        }
    }
}

/// State that outlives reloads.
#[derive(Debug)]
pub(crate) struct Shared {
    state: ArcSwap<State>,
    config_path: Option<PathBuf>,
    shutdown: CancellationToken,
    access_log: AccessLog,
    reloads: std::sync::atomic::AtomicU64,
    metrics: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle>,
    /// The rate limiters' Redis connection, kept across reloads.
    redis: RedisSlot,
    /// The response cache; kept across reloads unless `cache.max_size` changes.
    cache: ArcSwap<HttpCache>,
    /// Proxy listeners now accepting connections (see [`Gateway::serve`]).
    accepting: AtomicUsize,
}

impl Shared {
    /// The current state.
    pub(crate) fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// The response cache.
    pub(crate) fn cache(&self) -> Arc<HttpCache> {
        self.cache.load_full()
    }

    pub(crate) fn access_log(&self) -> &AccessLog {
        &self.access_log
    }

    pub(crate) fn metrics_handle(&self) -> Option<&metrics_exporter_prometheus::PrometheusHandle> {
        self.metrics.get()
    }
}

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket, file or TLS problem.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS set-up failed.
    #[error("tls: {0}")]
    Tls(String),
}

/// A running gateway: share it between the proxy listener, the admin
/// listener and signal handlers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub(crate) shared: Arc<Shared>,
}

impl Gateway {
    /// Build a gateway from a validated config. Must be called inside a tokio runtime.
    pub fn new(config: Config, shutdown: CancellationToken) -> Result<Gateway, Error> {
        let access_log = AccessLog::start(&config.access_log).map_err(|source| Error::Io {
            context: "opening the access log".into(),
            source,
        })?;
        Ok(Gateway::with_parts(config, None, shutdown, access_log))
    }

    /// Build a gateway from a config file, which `reload` will read again.
    pub fn from_file(path: &Path, shutdown: CancellationToken) -> Result<Gateway, Error> {
        let config = Config::load(path)?;
        let mut gw = Gateway::new(config, shutdown)?;
        if let Some(shared) = Arc::get_mut(&mut gw.shared) {
            shared.config_path = Some(path.to_owned());
        }
        Ok(gw)
    }

    fn with_parts(
        config: Config,
        config_path: Option<PathBuf>,
        shutdown: CancellationToken,
        access_log: AccessLog,
    ) -> Gateway {
        crate::metrics::describe();
        let redis = RedisSlot::default();
        let cache = ArcSwap::from_pointee(HttpCache::new(&config.cache));
        let state = State::build(config, &shutdown, None, &redis);
        Gateway {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(state),
                config_path,
                shutdown,
                access_log,
                reloads: Default::default(),
                metrics: Default::default(),
                redis,
                cache,
                accepting: AtomicUsize::new(0),
            }),
        }
    }

    /// Build a gateway that writes no access log (for tests and benchmarks).
    pub fn without_access_log(config: Config, shutdown: CancellationToken) -> Gateway {
        Gateway::with_parts(config, None, shutdown, AccessLog::disabled())
    }

    /// Serve `/metrics` from this recorder handle (installed by the binary).
    pub fn set_metrics_handle(&self, handle: metrics_exporter_prometheus::PrometheusHandle) {
        let _ = self.shared.metrics.set(handle);
    }

    /// The config now in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.shared.state().config)
    }

    /// The file this gateway was loaded from, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.shared.config_path.as_deref()
    }

    /// Swap in a new, already validated config. Requests in flight finish on the old one.
    pub fn apply(&self, config: Config) {
        // moka cannot resize: a new byte bound means a new, empty cache.
        if config.cache.max_size.0 != self.shared.cache().max_size() {
            self.shared
                .cache
                .store(Arc::new(HttpCache::new(&config.cache)));
        }
        let current = self.shared.state();
        let next = State::build(
            config,
            &self.shared.shutdown,
            Some(&current),
            &self.shared.redis,
        );
        let old = self.shared.state.swap(Arc::new(next));
        old.retired.cancel();
        self.shared
            .reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("sluice_gateway_reloads_total", "result" => "ok").increment(1);
        tracing::info!("configuration reloaded");
    }

    /// Read the config file again; on any problem (unreadable, empty or
    /// whitespace-only, invalid) keep the running config, log why and return
    /// it. SIGHUP, `POST /reload` and the file watcher all come here.
    pub fn reload(&self) -> Result<(), Error> {
        let Some(path) = self.config_path() else {
            return Err(Error::Io {
                context: "reload".into(),
                source: std::io::Error::other("this gateway was not started from a file"),
            });
        };
        match Config::load(path) {
            Ok(config) => {
                self.apply(config);
                Ok(())
            }
            Err(e) => {
                metrics::counter!("sluice_gateway_reloads_total", "result" => "error").increment(1);
                tracing::error!(path = %path.display(), error = %e, "reload refused; the previous configuration stays in force");
                Err(e.into())
            }
        }
    }

    /// Reload when the config file changes on disk (editors that replace the
    /// file are handled by watching its directory). Stops at shutdown.
    pub fn watch_config_file(&self) {
        if let Some(path) = self.config_path() {
            crate::watch::spawn(self.clone(), path, self.shared.shutdown.clone());
        }
    }

    /// Number of successful reloads so far.
    pub fn reload_count(&self) -> u64 {
        self.shared
            .reloads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serve the proxy on `listener` until `shutdown` is cancelled, then drain.
    /// While it accepts connections the gateway counts as accepting for
    /// [`Gateway::readiness`].
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let accepting = Accepting::start(&self.shared);
        let serve = crate::listener::serve(Arc::clone(&self.shared), listener, shutdown.clone());
        tokio::pin!(serve);
        // The listener stops accepting the moment `shutdown` fires and then
        // drains, which may take `drain_timeout`: readiness must fall at the
        // first moment, so that a load balancer stops sending new requests.
        tokio::select! {
            biased;
            result = &mut serve => return result,
            () = shutdown.cancelled() => drop(accepting),
        }
        serve.await
    }

    /// Whether this gateway can serve now, and why not (what `/readyz` answers).
    ///
    /// Ready when a proxy listener is accepting, shutdown has not begun and,
    /// unless `admin.readyz_requires_upstreams` is off, every upstream that a
    /// route of the config in force uses has at least one available target
    /// (healthy by active checks and not ejected). The config is always
    /// loaded: a gateway is built from one, and a refused reload keeps it.
    pub fn readiness(&self) -> Readiness {
        let state = self.shared.state();
        // Only upstreams that traffic can reach count; fixed-response routes need none.
        let used: BTreeSet<&str> = state
            .config
            .routes
            .iter()
            .filter_map(|r| r.upstream.as_deref())
            .collect();
        let upstreams: Vec<UpstreamReadiness> = used
            .into_iter()
            .filter_map(|name| state.upstreams.get(name))
            .map(|u| UpstreamReadiness {
                name: u.name.clone(),
                targets: u.targets().len(),
                available: u.targets().iter().filter(|t| t.is_available()).count(),
            })
            .collect();
        let unavailable: Vec<String> = upstreams
            .iter()
            .filter(|u| u.available == 0)
            .map(|u| u.name.clone())
            .collect();
        let accepting = self.shared.accepting.load(Ordering::Acquire) > 0;
        let shutting_down = self.shared.shutdown.is_cancelled();
        let requires_upstreams = state.config.admin.readyz_requires_upstreams;
        Readiness {
            ready: accepting && !shutting_down && (unavailable.is_empty() || !requires_upstreams),
            accepting,
            shutting_down,
            requires_upstreams,
            upstreams,
            unavailable,
        }
    }

    /// Serve the admin API on `listener` until `shutdown` is cancelled.
    pub async fn serve_admin(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        crate::admin::serve(self.clone(), listener, shutdown).await
    }
}

/// Counts one accepting listener until dropped.
struct Accepting(Arc<Shared>);

impl Accepting {
    fn start(shared: &Arc<Shared>) -> Accepting {
        shared.accepting.fetch_add(1, Ordering::AcqRel);
        Accepting(Arc::clone(shared))
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        self.0.accepting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer of [`Gateway::readiness`], serialized as `/readyz`'s body.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// Ready to take traffic.
    pub ready: bool,
    /// A proxy listener is accepting connections.
    pub accepting: bool,
    /// Shutdown has begun: the gateway drains and takes no new connections.
    pub shutting_down: bool,
    /// `admin.readyz_requires_upstreams`: whether `unavailable` makes the gateway unready.
    pub requires_upstreams: bool,
    /// Each upstream a route uses, by name.
    pub upstreams: Vec<UpstreamReadiness>,
    /// Names of the upstreams in `upstreams` without an available target.
    pub unavailable: Vec<String>,
}

/// One upstream's part of [`Readiness`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamReadiness {
    /// Name from the config.
    pub name: String,
    /// Targets configured.
    pub targets: usize,
    /// Targets healthy by active checks and not ejected by passive ones.
    pub available: usize,
}

/// Run the proxy on `listener` with `config` until `shutdown`; the shape every sluice server shares.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let gw = Gateway::new(config, shutdown.clone())?;
    gw.serve(listener, shutdown).await
}
