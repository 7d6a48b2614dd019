//! `sluice up --demo`: the whole system in one process; the demo batch runs
//! to success through the gateway, and SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{Proc, free_addr, run, sluice, text, wait_ready};

#[test]
fn up_demo_serves_the_dashboard_through_the_gateway_and_the_demo_batch_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let mut up = Proc::spawn(sluice().args([
        "up",
        "--demo",
        "--data",
        dir.path().to_str().unwrap(),
        "--listen",
        &listen.to_string(),
        "--admin",
        &admin.to_string(),
    ]));
    // The banner and the demo batch id come on stdout.
    let stdout = up.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut batch = None;
    let mut seen = Vec::new();
    while batch.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no demo batch line; stdout so far: {seen:#?}"));
        if let Some(rest) = line.strip_prefix("demo batch ") {
            batch = rest.split_whitespace().next().map(str::to_owned);
        }
        seen.push(line);
    }
    let batch = batch.unwrap();
    let url = format!("http://{listen}");
    wait_ready(&format!("{url}/healthz"));

    let out = run(&url, &["watch", &batch]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The dashboard page comes through the gateway.
    let page = reqwest::blocking::get(format!("{url}/")).unwrap();
    assert!(page.status().is_success());
    assert!(page.text().unwrap().to_lowercase().contains("<html"));

    // The demo's HTTP jobs went through the gateway's `demo` route, and
    // repeated items were answered from its cache.
    let metrics = reqwest::blocking::get(format!("http://{admin}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("route=\"demo\""), "{metrics}");
    let hits: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_gateway_cache_") && l.contains("hit"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(hits > 0.0, "no cache hits in:\n{metrics}");

    assert_eq!(up.terminate(), Some(0), "SIGTERM exits 0");
}
