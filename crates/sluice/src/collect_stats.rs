//! `sluice collect --stats`: a line per source and sink each second on
//! standard error, and a JSON summary there at exit. Standard output stays
//! free for the `stdout` sink.

use std::time::{Duration, Instant};

use sluice_collect::{Handle, Stats};
use tokio_util::sync::CancellationToken;

/// Print the per-second lines until shutdown.
pub(crate) async fn print_every_second(handle: Handle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = handle.stats();
    let mut at = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = handle.stats();
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        at = Instant::now();
        for line in lines(&last, &now, secs) {
            eprintln!("{line}");
        }
        last = now;
    }
}

/// The lines for one interval of `secs` between two snapshots.
fn lines(last: &Stats, now: &Stats, secs: f64) -> Vec<String> {
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / secs;
    let mut out = Vec::new();
    for (name, s) in &now.sources {
        let before = last.sources.get(name).cloned().unwrap_or_default();
        out.push(format!(
            "source {name}: in {:.0}/s, committed {:.0}/s, queue {}, acks pending {}, dropped {}, failed {}",
            rate(before.records_in, s.records_in),
            rate(before.acks_committed, s.acks_committed),
            s.queue_depth,
            s.acks_pending,
            s.dropped,
            s.acks_failed,
        ));
    }
    for (name, s) in &now.sinks {
        let before = last.sinks.get(name).cloned().unwrap_or_default();
        out.push(format!(
            "sink {name}: out {:.0}/s, queue {}, lag {}ms, retries {}, dead letters {}",
            rate(before.records_out, s.records_out),
            s.queue_depth,
            s.lag_ms,
            s.retries,
            s.dead_letters,
        ));
    }
    out
}

/// The final summary: every counter, and whether the drain finished in time.
pub(crate) fn print_summary(stats: &Stats, drained: bool) {
    let mut v = serde_json::to_value(stats).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("drained".into(), drained.into());
    }
    eprintln!("{v}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_collect::{SinkStats, SourceStats};

    #[test]
    fn rates_over_the_interval() {
        let mut last = Stats::default();
        last.sources.insert("a".into(), SourceStats::default());
        let mut now = Stats::default();
        now.sources.insert(
            "a".into(),
            SourceStats {
                records_in: 200,
                acks_committed: 100,
                acks_pending: 7,
                ..SourceStats::default()
            },
        );
        now.sinks.insert(
            "db".into(),
            SinkStats {
                records_out: 50,
                dead_letters: 2,
                ..SinkStats::default()
            },
        );
        let got = lines(&last, &now, 2.0);
        assert_eq!(
            got,
            vec![
                "source a: in 100/s, committed 50/s, queue 0, acks pending 7, dropped 0, failed 0",
                "sink db: out 25/s, queue 0, lag 0ms, retries 0, dead letters 2",
            ]
        );
    }
}
