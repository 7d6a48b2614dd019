//! The shared limiter: every gateway instance pointed at one Redis runs the
//! same GCRA in one Lua script, so the check and the update are atomic and
//! there is one limit however many instances answer.
//!
//! The script reads the clock with Redis `TIME` (microseconds), so instance
//! clocks never matter, and stores each key's TAT with a `PX` expiry equal
//! to the time after which the key is cold again. It returns whether the
//! request passed and the backlog (TAT − now); [`Gcra::outcome`] turns that
//! into remaining quota and waits, exactly as locally.
//!
//! Bucket keys are hashed ([`stable_digest`]) into the Redis key name, so
//! no client can make a Redis key larger than the config's own names.
//!
//! Each decision is bounded by `redis_timeout`. After a failure, Redis is
//! left alone for [`BACKOFF`] (decisions fail at once instead of each
//! waiting out the timeout), and a warning is logged at most every
//! [`WARN_EVERY`], with the number of failures in between.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::gcra::Gcra;
use super::key::{DIGEST_LEN, stable_digest};
use super::local::now_ns;

/// How long Redis is skipped after a failed decision.
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);
/// Least time between two "Redis is away" warnings.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(5);

/// Lua numbers are doubles: keep every value the script sees exact.
const LUA_MAX: u64 = 1 << 52;

/// GCRA in Redis. KEYS[1]: the bucket. ARGV: interval and tolerance in µs.
/// Returns {1 if allowed else 0, backlog in µs after the decision}.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, tat - now}
end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
return {1, new - now}
";

/// Why Redis made no decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer within `redis_timeout`.
    Timeout,
    /// A connection or server error.
    Error,
    /// Skipped: Redis failed less than [`BACKOFF`] ago.
    Down,
}

impl Failure {
    /// Label for the errors counter.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Error => "error",
            Failure::Down => "down",
        }
    }
}

/// One Redis connection shared by every route's limiter, kept across reloads.
pub(crate) struct RedisLink {
    url: String,
    timeout: Duration,
    prefix: String,
    conn: Option<ConnectionManager>,
    script: redis::Script,
    /// `now_ns` before which Redis is not tried; 0 when healthy.
    down_until: AtomicU64,
    down: AtomicBool,
    last_warn: AtomicU64,
    suppressed: AtomicU64,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A lazily connecting link; must be called inside a tokio runtime.
    /// A URL the client refuses leaves the link unusable: every decision fails.
    pub(crate) fn new(url: &str, timeout: Duration, prefix: &str) -> RedisLink {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(BACKOFF);
        let conn = redis::Client::open(url)
            .and_then(|client| ConnectionManager::new_lazy_with_config(client, config));
        let conn = match conn {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "rate limit redis client could not be created");
                None
            }
        };
        RedisLink {
            url: url.to_owned(),
            timeout,
            prefix: prefix.to_owned(),
            conn,
            script: redis::Script::new(SCRIPT),
            down_until: AtomicU64::new(0),
            down: AtomicBool::new(false),
            last_warn: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether this link can serve a config with these settings unchanged.
    pub(crate) fn serves(&self, url: &str, timeout: Duration, prefix: &str) -> bool {
        self.url == url && self.timeout == timeout && self.prefix == prefix
    }

    /// The Redis key of one bucket of one route:
    /// `<prefix><route>\x1f<hex of stable_digest(key)>`. The client-chosen
    /// part is hashed to 32 hex digits, so a key's size in Redis is bounded
    /// by the config (prefix and route name), never by the request.
    pub(crate) fn bucket(&self, route: &str, key: &[u8]) -> Vec<u8> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = stable_digest(key);
        let mut k = Vec::with_capacity(self.prefix.len() + route.len() + 1 + 2 * DIGEST_LEN);
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(route.as_bytes());
        k.push(0x1f);
        for b in digest {
            k.push(HEX[usize::from(b >> 4)]);
            k.push(HEX[usize::from(b & 0xf)]);
        }
        k
    }

    /// Decide one request for `bucket` under `gcra` (in µs ticks): whether it
    /// passed and the backlog after the decision, in µs.
    pub(crate) async fn check(&self, bucket: &[u8], gcra: Gcra) -> Result<(bool, u64), Failure> {
        let now = now_ns();
        if now < self.down_until.load(Ordering::Relaxed) {
            return Err(self.failed(Failure::Down, None));
        }
        let Some(conn) = &self.conn else {
            return Err(self.failed(Failure::Error, None));
        };
        let mut conn = conn.clone();
        let mut call = self.script.prepare_invoke();
        call.key(bucket)
            .arg(gcra.interval().min(LUA_MAX))
            .arg(gcra.tolerance().min(LUA_MAX));
        let result =
            tokio::time::timeout(self.timeout, call.invoke_async::<(u8, u64)>(&mut conn)).await;
        match result {
            Ok(Ok((allowed, backlog))) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limit redis reachable again");
                }
                Ok((allowed == 1, backlog))
            }
            Ok(Err(e)) => {
                self.trip(now);
                Err(self.failed(Failure::Error, Some(&e)))
            }
            Err(_) => {
                self.trip(now);
                Err(self.failed(Failure::Timeout, None))
            }
        }
    }

    fn trip(&self, now: u64) {
        let backoff = u64::try_from(BACKOFF.as_nanos()).unwrap_or(u64::MAX);
        self.down_until
            .store(now.saturating_add(backoff), Ordering::Relaxed);
        self.down.store(true, Ordering::Relaxed);
    }

    /// Log (rarely) and pass the failure on.
    fn failed(&self, failure: Failure, error: Option<&redis::RedisError>) -> Failure {
        let now = now_ns();
        let last = self.last_warn.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_nanos()).unwrap_or(u64::MAX);
        let due = last == 0 || now.saturating_sub(last) >= every;
        if due
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            match error {
                Some(e) => tracing::warn!(
                    failure = failure.as_str(),
                    error = %e,
                    failures_since_last_warning = suppressed,
                    "rate limit redis unavailable"
                ),
                None => tracing::warn!(
                    failure = failure.as_str(),
                    failures_since_last_warning = suppressed,
                    "rate limit redis unavailable"
                ),
            }
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        failure
    }
}

/// The link kept in the gateway's shared state, reused across reloads while
/// the Redis settings stay the same.
#[derive(Debug, Default)]
pub(crate) struct RedisSlot {
    link: Mutex<Option<std::sync::Arc<RedisLink>>>,
}

impl RedisSlot {
    /// The link for these settings: the current one when they match, else a new one.
    pub(crate) fn link(
        &self,
        url: &str,
        timeout: Duration,
        prefix: &str,
    ) -> std::sync::Arc<RedisLink> {
        let mut slot = self.link.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(link) if link.serves(url, timeout, prefix) => std::sync::Arc::clone(link),
            _ => {
                let link = std::sync::Arc::new(RedisLink::new(url, timeout, prefix));
                *slot = Some(std::sync::Arc::clone(&link));
                link
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bucket_names_are_bounded_and_stable() {
        // Lazy: nothing listens here, and nothing connects.
        let link = RedisLink::new("redis://127.0.0.1:1", Duration::from_millis(50), "rl:");
        let named = link.bucket("api", b"ip=192.0.2.7");
        assert_eq!(named, b"rl:api\x1f49dd87659b85791cdbcebc5a897e1e3b");
        let fixed_len = "rl:api".len() + 1 + 2 * DIGEST_LEN;
        for len in [0, 1, 100, 8 << 10, 64 << 10] {
            let key = vec![b'k'; len];
            assert_eq!(
                link.bucket("api", &key).len(),
                fixed_len,
                "key of {len} bytes"
            );
        }
        assert_ne!(link.bucket("api", b"a"), link.bucket("api", b"b"));
        assert_ne!(link.bucket("api", b"a"), link.bucket("web", b"a"));
    }
}
