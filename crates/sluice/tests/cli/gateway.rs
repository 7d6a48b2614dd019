//! `sluice gateway` as the real binary: on one worker (the current-thread
//! runtime) and on two (the multi-thread one) it proxies through an upstream
//! to its own fixed route, answers on the admin listener, and exits 0 on
//! SIGTERM.

use crate::support::{Proc, free_addr, sluice, wait_ready};

fn config(workers: usize, listen: std::net::SocketAddr, admin: std::net::SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
workers = {workers}

[admin]
listen = "{admin}"

[upstreams.self]
targets = ["{listen}"]

[[routes]]
name = "hello"
path = "/hello"
respond = {{ status = 200, headers = {{ "content-type" = "text/plain" }}, body = "hello from {workers}\n" }}

[[routes]]
name = "through"
path_prefix = "/through/"
upstream = "self"
strip_prefix = true

[access_log]
enabled = false
"#
    )
}

fn serves_and_stops(workers: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (listen, admin) = (free_addr(), free_addr());
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config(workers, listen, admin)).expect("write config");
    let mut gw = Proc::spawn(sluice().args(["gateway", "--config"]).arg(&path));
    wait_ready(&format!("http://{admin}/readyz"));

    let client = reqwest::blocking::Client::new();
    for _ in 0..20 {
        let r = client
            .get(format!("http://{listen}/through/hello"))
            .send()
            .expect("request through the gateway");
        assert_eq!(r.status(), 200, "workers = {workers}");
        assert!(
            r.headers().contains_key("x-request-id"),
            "the proxy adds a request id"
        );
        assert_eq!(r.text().expect("body"), format!("hello from {workers}\n"));
    }
    let missing = client
        .get(format!("http://{listen}/nowhere"))
        .send()
        .expect("request");
    assert_eq!(missing.status(), 404);

    assert_eq!(gw.terminate(), Some(0), "SIGTERM drains and exits 0");
}

#[test]
fn one_worker_runs_on_the_current_thread_runtime_and_proxies() {
    serves_and_stops(1);
}

#[test]
fn two_workers_run_on_the_multi_thread_runtime_and_proxy() {
    serves_and_stops(2);
}
