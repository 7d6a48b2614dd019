//! Hot reload over real sockets: `Gateway::apply`, the admin `POST /reload`
//! and a change of the config file all swap routes atomically; an invalid
//! file, and an empty or whitespace-only one, keeps the running config on
//! every reload path; reloads under traffic fail no request; requests in
//! flight finish on the config they started with.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice_gateway::{Config, ConfigError, Gateway};
use support::{
    ConfigFile, TestGateway, TestUpstream, admin_json, api_config, client, closed_addr, eventually,
    respond,
};
use tokio_util::sync::CancellationToken;

/// A config whose route `/r` answers `body` itself.
fn fixed(body: &str) -> String {
    format!(
        r#"
        [access_log]
        enabled = false
        [[routes]]
        path = "/r"
        respond = {{ body = "{body}" }}
        "#
    )
}

#[tokio::test]
async fn apply_switches_routes() {
    let gw = TestGateway::start(&fixed("one")).await;
    assert_eq!(gw.get_text("/r").await, (200, "one".into()));
    gw.gw
        .apply(Config::parse(&fixed("two"), "two.toml").unwrap());
    assert_eq!(gw.get_text("/r").await, (200, "two".into()));
    assert_eq!(gw.gw.reload_count(), 1);
}

#[tokio::test]
async fn admin_reload_reads_the_file_and_refuses_an_invalid_one() {
    let file = ConfigFile::new(&fixed("one"));
    let gw = TestGateway::start_file(&file.path).await;
    assert_eq!(gw.get_text("/r").await, (200, "one".into()));

    file.write(&fixed("two"));
    let (status, v) = gw.admin_post("/reload").await;
    assert_eq!(status, 200);
    assert_eq!(v["reloaded"], true);
    assert_eq!(gw.get_text("/r").await, (200, "two".into()));

    // Two problems: a route naming a missing upstream and a bad duration.
    file.write(
        r#"
        [[routes]]
        path = "/r"
        upstream = "nowhere"
        "#,
    );
    let (status, v) = gw.admin_post("/reload").await;
    assert_eq!(status, 422);
    assert_eq!(v["error"]["code"], "reload_refused");
    assert_eq!(v["error"]["file"], file.name());
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("routes[0].upstream"), "{message}");
    assert!(message.contains("nowhere"), "{message}");
    assert_eq!(v["error"]["problems"][0]["path"], "routes[0].upstream");
    assert_eq!(v["error"]["problems"][0]["line"], 4);
    assert_eq!(
        gw.get_text("/r").await,
        (200, "two".into()),
        "old config stays"
    );

    file.write("[server]\nidle_timeout = \"soon\"\n");
    let (status, v) = gw.admin_post("/reload").await;
    assert_eq!(status, 422);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gateway.toml:2: server.idle_timeout"),
        "the problem has its line: {message}"
    );
    assert_eq!(gw.get_text("/r").await, (200, "two".into()));
    assert_eq!(gw.gw.reload_count(), 1);
}

#[tokio::test]
async fn a_changed_file_is_reloaded_and_an_invalid_one_ignored() {
    let file = ConfigFile::new(&fixed("one"));
    let gw = TestGateway::start_file(&file.path).await;
    gw.gw.watch_config_file();
    // Let the watcher register before the first write.
    tokio::time::sleep(Duration::from_millis(200)).await;

    file.write(&fixed("two"));
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.get_text("/r").await.1 == "two"
        })
        .await,
        "the file change is picked up"
    );

    file.write("[[routes]]\npath = \"/r\"\nupstream = \"nowhere\"\n");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        gw.get_text("/r").await,
        (200, "two".into()),
        "invalid file ignored"
    );

    // A truncated (empty) file is a write in progress, not a config without routes.
    for blank in ["", " \n\t\n"] {
        file.write(blank);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(gw.get_text("/r").await.1, "two", "{blank:?} ignored");
    }

    // Editors replace the file by renaming a new one over it.
    let tmp = file.path.with_extension("toml.swp");
    std::fs::write(&tmp, fixed("three")).unwrap();
    std::fs::rename(&tmp, &file.path).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.get_text("/r").await.1 == "three"
        })
        .await,
        "a file renamed over the config is picked up"
    );
}

/// Files that would parse as a config with no routes, which every reload path refuses.
const BLANK: [&str; 3] = ["", "\n", "  \n\t\r\n  "];

#[tokio::test]
async fn every_reload_path_refuses_an_empty_file_naming_it() {
    let file = ConfigFile::new(&fixed("one"));
    let gw = TestGateway::start_file(&file.path).await;
    for blank in BLANK {
        file.write(blank);
        // The admin API.
        let (status, v) = gw.admin_post("/reload").await;
        assert_eq!(status, 422, "{blank:?}: {v}");
        assert_eq!(v["error"]["code"], "reload_refused");
        assert_eq!(v["error"]["file"], file.name());
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&file.name()) && message.contains("empty"),
            "{message}"
        );
        // `Gateway::reload`, which SIGHUP calls.
        match gw.gw.reload() {
            Err(sluice_gateway::Error::Config(ConfigError::Empty { path })) => {
                assert_eq!(path, file.name());
            }
            other => panic!("{blank:?}: expected an empty-file error, got {other:?}"),
        }
        assert_eq!(
            gw.get_text("/r").await,
            (200, "one".into()),
            "old config stays"
        );
    }
    assert_eq!(gw.gw.reload_count(), 0);
    // Nor does a gateway start from one.
    let err = Gateway::from_file(&file.path, CancellationToken::new()).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    // The file is read again on the next call: a real config goes in.
    file.write(&fixed("two"));
    assert_eq!(gw.admin_post("/reload").await.0, 200);
    assert_eq!(gw.get_text("/r").await, (200, "two".into()));
}

#[tokio::test]
async fn admin_reload_of_a_gateway_without_a_file_is_a_conflict() {
    let gw = TestGateway::start(&fixed("one")).await;
    let (status, v) = gw.admin_post("/reload").await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "reload_refused");
}

#[tokio::test]
async fn reloads_under_traffic_fail_no_request() {
    let one = TestUpstream::fixed("one").await;
    let two = TestUpstream::fixed("two").await;
    let configs = [
        Config::parse(&api_config(&[one.addr], "", ""), "one.toml").unwrap(),
        Config::parse(&api_config(&[two.addr], "", ""), "two.toml").unwrap(),
    ];
    let gw = TestGateway::start(&api_config(&[one.addr], "", "")).await;
    let stop = CancellationToken::new();
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (c, url, stop, ok) = (client(), gw.url("/x"), stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for _ in 0..100_000 {
                if stop.is_cancelled() {
                    break;
                }
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let body = r.text().await;
                        match body.as_deref() {
                            Ok("one" | "two") => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.push(format!("body {other:?}")),
                        }
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            failures
        }));
    }
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        gw.gw.apply(configs[(i + 1) % 2].clone());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok.load(Ordering::Relaxed) > 100, "traffic flowed");
    assert!(one.hits() > 0 && two.hits() > 0, "both configs served");
    assert_eq!(gw.gw.reload_count(), 10);
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_old_config() {
    let old = TestUpstream::delayed(Duration::from_millis(800), "old").await;
    let gw = TestGateway::proxy_to(&[old.addr]).await;
    let in_flight = tokio::spawn({
        let url = gw.url("/r");
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    assert!(eventually(Duration::from_secs(3), || async { old.hits() == 1 }).await);
    gw.gw
        .apply(Config::parse(&fixed("new"), "new.toml").unwrap());
    assert_eq!(gw.get_text("/r").await, (200, "new".into()));
    assert_eq!(in_flight.await.unwrap(), (200, "old".into()));
}

#[tokio::test]
async fn a_reload_stops_the_old_health_checks() {
    let probes = Arc::new(AtomicUsize::new(0));
    let up = TestUpstream::start({
        let probes = probes.clone();
        move |_req| {
            probes.fetch_add(1, Ordering::SeqCst);
            async { respond(200, "ok") }
        }
    })
    .await;
    let gw = TestGateway::start(&api_config(
        &[up.addr],
        r#"health = { path = "/healthz", interval = "50ms" }"#,
        "",
    ))
    .await;
    assert!(
        eventually(Duration::from_secs(3), || async {
            probes.load(Ordering::SeqCst) >= 2
        })
        .await
    );
    gw.gw
        .apply(Config::parse(&fixed("no upstream"), "x.toml").unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let settled = probes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        probes.load(Ordering::SeqCst),
        settled,
        "no probes after the reload"
    );
}

#[tokio::test]
async fn a_reload_keeps_what_is_known_about_unchanged_upstreams() {
    let ok = TestUpstream::fixed("ok").await;
    let dead = closed_addr();
    let text = api_config(
        &[dead, ok.addr],
        r#"health = { path = "/", interval = "100ms", rise = 2, fall = 1 }"#,
        "",
    );
    let gw = TestGateway::start(&text).await;
    let down = || async {
        let v = admin_json(&gw, "/upstreams").await;
        v["upstreams"][0]["targets"][0]["healthy"] == false
    };
    assert!(
        eventually(Duration::from_secs(3), down).await,
        "the dead target goes down"
    );
    for _ in 0..5 {
        gw.gw.apply(Config::parse(&text, "same.toml").unwrap());
        // No retries: a request sent to the dead target would fail.
        for _ in 0..4 {
            let r = gw.get("/x").await;
            assert_eq!(
                r.status(),
                200,
                "a reload must not bring the dead target back"
            );
        }
    }
    assert!(down().await);
}
