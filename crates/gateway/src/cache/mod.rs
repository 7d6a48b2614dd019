//! The shared HTTP response cache (RFC 9111), in memory, bounded by bytes.
//!
//! - `key` — primary keys (host + target) and `Vary` secondary keys.
//! - `entry` — a stored response and the rules for storing one.
//! - `directives` — `stale-while-revalidate`, `stale-if-error` and stale bans.
//! - `flight` — one upstream fetch per key at a time (miss storms).
//! - `fill` — store a response while it streams to the client.
//! - `serve` — the request path: hit, stale, revalidate, fill, bypass.
//! - `status` — the `Cache-Status` header (RFC 9211).
//!
//! The cache lives in `Shared`, so it survives reloads.

mod directives;
mod entry;
mod fill;
mod flight;
mod key;
mod serve;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName};

use crate::config::CacheConfig;
use entry::Entry;
use flight::Flights;

pub(crate) use serve::{Fetched, Lookup, Origin, after_forward, bypass_reason, serve};

/// The `Vary` header names a primary key's responses use, and the generation
/// that makes older variants unreachable once the key is invalidated.
#[derive(Clone, Debug)]
struct VarySpec {
    generation: u64,
    names: Arc<[HeaderName]>,
}

/// The cache: entries by secondary key, `Vary` specs by primary key, and the
/// flights in the air.
#[derive(Debug)]
pub(crate) struct HttpCache {
    entries: moka::sync::Cache<String, Arc<Entry>>,
    vary: moka::sync::Cache<String, VarySpec>,
    flights: Arc<Flights>,
    generation: AtomicU64,
    max_size: u64,
}

/// What a lookup found.
pub(crate) enum Found {
    /// Nothing for this URI.
    UriMiss,
    /// Responses for this URI, but none for these `Vary` values; the key the variant would have.
    VaryMiss(String),
    /// A stored response under this key.
    Entry(String, Arc<Entry>),
}

/// Which keys a purge removes.
#[derive(Debug)]
pub(crate) enum Purge<'a> {
    /// Exactly this path and query.
    Key(&'a str),
    /// Every path and query starting with this.
    Prefix(&'a str),
}

impl HttpCache {
    /// An empty cache sized by `config`.
    pub(crate) fn new(config: &CacheConfig) -> HttpCache {
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_size.0)
            .weigher(|k: &String, v: &Arc<Entry>| {
                v.weight()
                    .saturating_add(u32::try_from(k.len()).unwrap_or(u32::MAX))
            })
            .build();
        // Specs are tiny; a count bound keeps them from outliving their entries for long.
        let vary = moka::sync::Cache::builder().max_capacity(1 << 16).build();
        HttpCache {
            entries,
            vary,
            flights: Arc::default(),
            generation: AtomicU64::new(1),
            max_size: config.max_size.0,
        }
    }

    /// The byte bound this cache was built with (a reload that changes it builds a new cache).
    pub(crate) fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Find the stored response for `primary` that matches the request's `Vary` headers.
    pub(crate) fn find(&self, primary: &str, request: &HeaderMap) -> Found {
        match self.vary.get(primary) {
            Some(spec) => {
                let k = variant_key(primary, &spec, request);
                match self.entries.get(&k) {
                    Some(e) => Found::Entry(k, e),
                    None => Found::VaryMiss(k),
                }
            }
            None => match self.entries.get(primary) {
                Some(e) => Found::Entry(primary.to_owned(), e),
                None => Found::UriMiss,
            },
        }
    }

    /// Store `entry` for `primary`, under the variant that `request` selects.
    pub(crate) fn insert(&self, primary: &str, request: &HeaderMap, entry: Entry) {
        self.insert_arc(primary, request, Arc::new(entry));
    }

    /// [`insert`](Self::insert) for an entry already shared.
    pub(crate) fn insert_arc(&self, primary: &str, request: &HeaderMap, entry: Arc<Entry>) {
        let names = key::vary_names(&entry.headers).unwrap_or_else(|| Arc::new([]));
        if names.is_empty() {
            self.vary.invalidate(primary);
            self.entries.insert(primary.to_owned(), entry);
        } else {
            let spec = match self.vary.get(primary) {
                Some(spec) if spec.names == names => spec,
                _ => {
                    let spec = VarySpec {
                        generation: self.generation.fetch_add(1, Ordering::Relaxed),
                        names,
                    };
                    self.vary.insert(primary.to_owned(), spec.clone());
                    // A plain entry from before the response started to vary is dead now.
                    self.entries.invalidate(primary);
                    spec
                }
            };
            self.entries
                .insert(variant_key(primary, &spec, request), entry);
        }
        self.publish_gauges();
    }

    /// Make every stored response for `primary` unreachable at once (RFC 9111 §4.4).
    /// Variants are left for the LRU: a new `Vary` generation never reaches them.
    pub(crate) fn invalidate(&self, primary: &str) {
        self.vary.invalidate(primary);
        self.entries.invalidate(primary);
        self.publish_gauges();
    }

    /// Remove stored responses by key or prefix, on `host` or on any host; how many went.
    pub(crate) fn purge(&self, host: Option<&str>, what: &Purge<'_>) -> u64 {
        let matches = |k: &str| {
            let (h, target) = key::split(k);
            host.is_none_or(|want| want.eq_ignore_ascii_case(h))
                && match what {
                    Purge::Key(t) => target == *t,
                    Purge::Prefix(p) => target.starts_with(p),
                }
        };
        let mut removed = 0;
        for (k, _) in self.entries.iter() {
            if matches(&k) {
                self.entries.invalidate(k.as_str());
                removed += 1;
            }
        }
        for (k, _) in self.vary.iter() {
            if matches(&k) {
                self.vary.invalidate(k.as_str());
            }
        }
        self.entries.run_pending_tasks();
        self.publish_gauges();
        removed
    }

    /// Entries and bytes held now.
    pub(crate) fn stats(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        self.publish_gauges();
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    fn publish_gauges(&self) {
        // moka settles its counts lazily; the gauges may trail by a few writes.
        metrics::gauge!("sluice_gateway_cache_bytes").set(self.entries.weighted_size() as f64);
        metrics::gauge!("sluice_gateway_cache_entries").set(self.entries.entry_count() as f64);
    }
}

fn variant_key(primary: &str, spec: &VarySpec, request: &HeaderMap) -> String {
    key::secondary(
        &format!("{primary}\n~{}", spec.generation),
        &spec.names,
        request,
    )
}
