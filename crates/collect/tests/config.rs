//! Config errors: every problem, with its key path and line.

use sluice_collect::{Config, ConfigError};

fn problems(toml: &str) -> Vec<String> {
    match Config::parse(toml, "c.toml") {
        Ok(_) => panic!("expected problems"),
        Err(ConfigError::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| format!("{}:{}: {}", p.line.unwrap_or(0), p.path, p.message))
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_problem_with_its_line() {
    let got = problems(
        r#"
[sources.orders]
kind = "crawl"
url = "nats://127.0.0.1:4222"

[sources.logs]
kind = "file"
path = "/var/log/app.log"
poll_interval = "often"
colour = "blue"

[transforms.parsed]
kind = "parse_json"
inputs = ["orders", "logz"]

[transforms.a]
kind = "fields"
inputs = ["b"]

[transforms.b]
kind = "fields"
inputs = ["a"]

[sinks.db]
kind = "sqlite"
path = "x.db"
batch = { timeout = "soon" }

[sinks.nowhere]
kind = "jsonl"
path = "out.jsonl"

[sinks.odd]
kind = "kafka"
inputs = ["parsed"]
"#,
    );
    let expect = [
        "4:sources.orders.url: unknown key `url`",
        "9:sources.logs.poll_interval: invalid duration \"often\"",
        "10:sources.logs.colour: unknown key `colour`",
        "14:transforms.parsed.inputs[1]: no source or transform named `logz`",
        "18:transforms.a.inputs: inputs form a cycle",
        "24:sinks.db.inputs: needs at least one input",
        "27:sinks.db.batch.timeout: invalid duration \"soon\"",
        "29:sinks.nowhere.inputs: needs at least one input",
        "34:sinks.odd.kind: unknown kind `kafka`; expected one of sqlite, jsonl, stdout, postgres",
    ];
    for e in expect {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in:\n{}",
            got.join("\n")
        );
    }
    let mut lines: Vec<&str> = got.iter().map(|g| g.split(':').next().unwrap()).collect();
    let sorted = {
        let mut s = lines.clone();
        s.sort_by_key(|l| l.parse::<usize>().unwrap());
        s
    };
    assert_eq!(lines, sorted, "problems in file order");
    lines.dedup();
}

#[test]
fn the_issue_shape_parses_once_its_kinds_exist() {
    let cfg = Config::parse(
        r#"
data_dir = "./d"

[sources.web]
kind = "http_push"
address = "127.0.0.1:0"

[sources.lines]
kind = "tcp"
address = "127.0.0.1:0"
when_full = "drop_newest"

[transforms.parsed]
kind = "parse_json"
inputs = ["web", "lines"]

[sinks.db]
kind = "sqlite"
inputs = ["parsed"]
path = "./sluice-data/collect.db"
batch = { max_records = 500, max_bytes = "1MiB", timeout = "50ms" }
"#,
        "ok.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sources.len(), 2);
    assert_eq!(cfg.sinks["db"].inputs, vec!["parsed"]);
}

#[test]
fn syntax_errors_and_empty_files() {
    let got = problems("[sources.a\nkind = 1\n");
    assert!(got[0].starts_with("1:<toml>"), "{got:?}");
    let got = problems("");
    assert!(got.iter().any(|g| g.contains("no sources")), "{got:?}");
}

#[test]
fn a_component_that_is_not_a_table_and_a_missing_kind() {
    let got = problems(
        r#"
sources = { a = 5 }

[sinks.out]
inputs = ["a"]
"#,
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("2:sources.a: must be a table")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|g| g.contains("sinks.out") && g.contains("missing required key `kind`")),
        "{got:?}"
    );
}

#[test]
fn the_stream_kinds_and_filter_report_their_problems() {
    let got = problems(
        r#"
[sources.orders]
kind = "nats"
url = "http://127.0.0.1:4222"
subject = "orders.>"
jetstream = { stream = "OR.DERS", consumer = "sluice", ack_wait = "0s", colour = 1 }

[sources.sensors]
kind = "mqtt"
url = "mqtt://127.0.0.1:1883"
topics = []
client_id = ""
qos = 2

[transforms.errors]
kind = "filter"
inputs = ["orders", "sensors"]
condition = '.level = "error"'

[sinks.pg]
kind = "postgres"
inputs = ["errors"]
url = "mysql://x"
table = "bad-name"
"#,
    );
    let expect = [
        "6:sources.orders.jetstream.colour: unknown key `colour`",
        "13:sources.sensors.qos: unknown key `qos`",
        "18:transforms.errors.condition: column 8: `=` is not an operator; compare with `==`",
        "23:sinks.pg.url: \"mysql://x\" is not a URL of scheme postgres or postgresql",
        "24:sinks.pg.table: \"bad-name\" is not a plain SQL name",
    ];
    for e in expect {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in:\n{}",
            got.join("\n")
        );
    }

    // With the unknown keys gone, the values are checked.
    let got = problems(
        r#"
[sources.orders]
kind = "nats"
url = "http://127.0.0.1:4222"
subject = "orders.>"
jetstream = { stream = "OR.DERS", consumer = "sluice", ack_wait = "0s" }

[sources.sensors]
kind = "mqtt"
url = "mqtt://127.0.0.1:1883"
topics = []
client_id = ""

[sinks.out]
kind = "stdout"
inputs = ["orders", "sensors"]
"#,
    );
    let expect = [
        "4:sources.orders.url: \"http://127.0.0.1:4222\" is not a URL of scheme nats or tls",
        "6:sources.orders.jetstream.stream: \"OR.DERS\" is not a JetStream name",
        "6:sources.orders.jetstream.ack_wait: must be longer than zero",
        "11:sources.sensors.topics: needs at least one topic filter",
        "12:sources.sensors.client_id: must not be empty",
    ];
    for e in expect {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in:\n{}",
            got.join("\n")
        );
    }
}

#[test]
fn the_stream_kinds_parse() {
    let cfg = Config::parse(
        r#"
[sources.orders]
kind = "nats"
url = "nats://127.0.0.1:4222"
subject = "orders.>"
jetstream = { stream = "ORDERS", consumer = "sluice" }

[sources.sensors]
kind = "mqtt"
url = "mqtt://127.0.0.1:1883"
topics = ["sensors/#"]
client_id = "sluice-1"

[transforms.errors]
kind = "filter"
inputs = ["orders", "sensors"]
condition = '.level == "error" or (.status >= 500 and not exists(.retry))'

[sinks.pg]
kind = "postgres"
inputs = ["errors"]
url = "postgres://postgres@127.0.0.1:5432/test"
"#,
        "ok.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sources.len(), 2);
    assert_eq!(cfg.sinks["pg"].kind.name(), "postgres");
}

#[test]
fn the_issue_example_parses() {
    let cfg = Config::parse(
        r#"
[sources.orders]
kind = "nats"
url = "nats://127.0.0.1:4222"
subject = "orders.>"
jetstream = { stream = "ORDERS", consumer = "sluice" }

[sources.prices]
kind = "http_poll"
url = "http://127.0.0.1:9000/prices?since={{cursor}}"
interval = "5s"

[transforms.parsed]
kind = "parse_json"
inputs = ["orders", "prices"]

[sinks.db]
kind = "sqlite"
inputs = ["parsed"]
path = "./sluice-data/collect.db"
"#,
        "issue.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sources["prices"].kind.name(), "http_poll");
    let got = problems(
        r#"
[sources.prices]
kind = "http_poll"
url = "ftp://x"
next = "sometimes"
records = "items"

[sinks.out]
kind = "stdout"
inputs = ["prices"]
"#,
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("5:sources.prices.next:") && g.contains("use \"link\"")),
        "{got:?}"
    );
    let got = problems(
        r#"
[sources.prices]
kind = "http_poll"
url = "ftp://x"
records = "items"

[sinks.out]
kind = "stdout"
inputs = ["prices"]
"#,
    );
    assert!(
        got.iter().any(|g| g
            .starts_with("4:sources.prices.url: \"ftp://x\" is not a URL of scheme http or https")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("5:sources.prices.records: \"items\" is not a JSON pointer")),
        "{got:?}"
    );
}

#[test]
fn a_ca_cert_that_cannot_be_read_is_reported_with_its_line() {
    let got = problems(
        r#"
[sources.web]
kind = "crawl"
seeds = ["https://example.org/"]
ca_cert = "/nonexistent/ca.pem"

[sources.feed]
kind = "http_poll"
url = "https://example.org/feed"
ca_cert = "/nonexistent/feed-ca.pem"

[sinks.db]
kind = "sqlite"
inputs = ["web", "feed"]
path = "x.db"
"#,
    );
    assert!(
        got.iter()
            .any(|p| p.starts_with("5:sources.web.ca_cert: cannot read /nonexistent/ca.pem")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|p| p.starts_with("10:sources.feed.ca_cert: cannot read /nonexistent/feed-ca.pem")),
        "{got:#?}"
    );
}
