//! The frontier (URLs waiting, breadth first), the seen set (every URL
//! ever queued or claimed, so each is fetched at most once), and per-host
//! state: the concurrency permits, the politeness clock and robots.txt.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};
use tokio::time::Instant;
use url::Url;

use super::robots::Robots;

/// A URL waiting to be fetched.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// Canonical URL.
    pub(crate) url: Url,
    /// Links followed from a seed to reach it (seeds are 0).
    pub(crate) depth: u32,
    /// Cross-host redirects followed to reach it.
    pub(crate) hops: u32,
}

/// The seen set, shared with page tasks so a redirect can claim its target.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<HashSet<Box<str>>>>);

impl Seen {
    /// Marks `url` seen; true when it was not seen before.
    pub(crate) fn claim(&self, url: &str) -> bool {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if set.contains(url) {
            false
        } else {
            set.insert(url.into());
            true
        }
    }
}

/// URLs waiting, in discovery order (so breadth first by depth).
#[derive(Default)]
pub(crate) struct Frontier {
    queue: VecDeque<Item>,
    pub(crate) seen: Seen,
}

impl Frontier {
    /// An empty frontier over the seen set `seen`.
    pub(crate) fn new(seen: Seen) -> Frontier {
        Frontier {
            queue: VecDeque::new(),
            seen,
        }
    }

    /// Queues `item` unless its URL was seen; true when queued.
    pub(crate) fn offer(&mut self, item: Item) -> bool {
        if self.seen.claim(item.url.as_str()) {
            self.queue.push_back(item);
            true
        } else {
            false
        }
    }

    /// Queues an item restored from the store (already in the seen set).
    pub(crate) fn restore(&mut self, item: Item) {
        self.seen.claim(item.url.as_str());
        self.queue.push_back(item);
    }

    /// The next URL to fetch.
    pub(crate) fn pop(&mut self) -> Option<Item> {
        self.queue.pop_front()
    }

    /// URLs waiting.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// The key of a host's state: scheme, host and port (robots.txt is per origin).
pub(crate) fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// One host's limits and robots.txt.
pub(crate) struct Host {
    permits: Semaphore,
    /// When the next request may start.
    next: Mutex<Instant>,
    /// Gap between request starts: `--delay`, or robots' Crawl-delay if longer.
    delay: Mutex<Duration>,
    /// Parsed robots.txt, fetched by the first task to need it.
    pub(crate) robots: OnceCell<Arc<Robots>>,
    /// Whether a task has taken on reading this host's sitemaps.
    sitemaps_taken: AtomicBool,
}

impl Host {
    /// A host allowing `per_host` requests at once, `delay` apart.
    pub(crate) fn new(per_host: usize, delay: Duration) -> Host {
        Host {
            permits: Semaphore::new(per_host.max(1)),
            next: Mutex::new(Instant::now()),
            delay: Mutex::new(delay),
            robots: OnceCell::new(),
            sitemaps_taken: AtomicBool::new(false),
        }
    }

    /// True for the first caller only: that task reads the sitemaps.
    pub(crate) fn take_sitemaps(&self) -> bool {
        !self.sitemaps_taken.swap(true, Ordering::AcqRel)
    }

    /// Raises the politeness delay to at least `delay`.
    pub(crate) fn at_least(&self, delay: Duration) {
        let mut d = self.delay.lock().unwrap_or_else(PoisonError::into_inner);
        *d = (*d).max(delay);
    }

    /// The politeness delay in force.
    pub(crate) fn delay(&self) -> Duration {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds the next request to this host until `d` from now (Retry-After).
    pub(crate) fn pause_for(&self, d: Duration) {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        *next = (*next).max(Instant::now() + d);
    }

    /// Waits for a permit and for this host's next start slot, and books
    /// the slot after it: request starts are at least `delay` apart.
    pub(crate) async fn turn(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed.
        let permit = self
            .permits
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("host semaphore is never closed"));
        let delay = self.delay();
        let start = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let start = (*next).max(Instant::now());
            *next = start + delay;
            start
        };
        tokio::time::sleep_until(start).await;
        permit
    }
}

/// Every host met so far.
#[derive(Default)]
pub(crate) struct Hosts {
    map: HashMap<String, Arc<Host>>,
}

impl Hosts {
    /// The state of `url`'s host, created on first use.
    pub(crate) fn get(&mut self, url: &Url, per_host: usize, delay: Duration) -> Arc<Host> {
        self.map
            .entry(origin(url))
            .or_insert_with(|| Arc::new(Host::new(per_host, delay)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(s: &str, depth: u32) -> Item {
        Item {
            url: Url::parse(s).unwrap(),
            depth,
            hops: 0,
        }
    }

    #[test]
    fn each_url_is_queued_once_in_discovery_order() {
        let mut f = Frontier::default();
        assert!(f.offer(item("http://h/a", 0)));
        assert!(f.offer(item("http://h/b", 1)));
        assert!(!f.offer(item("http://h/a", 2)));
        assert!(!f.seen.claim("http://h/b"));
        assert!(f.seen.claim("http://h/c"));
        assert!(!f.offer(item("http://h/c", 1)));
        assert_eq!(f.len(), 2);
        assert_eq!(f.pop().unwrap().url.as_str(), "http://h/a");
        assert_eq!(f.pop().unwrap().url.as_str(), "http://h/b");
        assert!(f.pop().is_none());
    }

    #[test]
    fn origins_separate_scheme_and_port() {
        let o = |s| origin(&Url::parse(s).unwrap());
        assert_eq!(o("http://h/x"), "http://h:80");
        assert_eq!(o("http://h:80/y"), o("http://h/x"));
        assert_ne!(o("https://h/x"), o("http://h/x"));
    }

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_by_the_delay() {
        let host = Host::new(4, Duration::from_millis(100));
        let t0 = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..3 {
            let _p = host.turn().await;
            starts.push(Instant::now() - t0);
        }
        assert_eq!(
            starts,
            vec![
                Duration::ZERO,
                Duration::from_millis(100),
                Duration::from_millis(200)
            ]
        );
        host.pause_for(Duration::from_secs(5));
        let before = Instant::now();
        let _p = host.turn().await;
        assert!(Instant::now() - before >= Duration::from_secs(5));
    }
}
