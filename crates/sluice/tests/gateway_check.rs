//! `sluice gateway check` run as the real binary: exit status and output for
//! a valid file (the shipped example), an invalid one, and an unreadable one;
//! and `--help` documenting both commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_GATEWAY_CONFIG")
        .output()
        .expect("the sluice binary runs")
}

fn check(path: &Path) -> Output {
    sluice(&["gateway", "check", "--config", path.to_str().unwrap()])
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway.toml")
}

#[test]
fn the_example_config_passes() {
    let out = check(&example());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": ok ("), "{stdout}");
}

#[test]
fn an_invalid_config_prints_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        [
            "[upstreams.api]",             // 1
            "targets = [\"127.0.0.1:1\"]", // 2
            "[[routes]]",                  // 3
            "upstream = \"api\"",          // 4
            "[[routes]]",                  // 5
            "upstream = \"apy\"",          // 6
            "timout = \"5s\"",             // 7
            "[cache]",                     // 8
            "max_size = \"12XB\"",         // 9
        ]
        .join("\n"),
    )
    .unwrap();
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let file = path.display().to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "{file}:6: routes[1].upstream: no upstream named \"apy\""
        )),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{file}:7: routes[1].timout: unknown key `timout`, expected one of"
        )),
        "{stdout}"
    );
    assert!(lines[1].contains("`timeout`"), "{stdout}");
    assert!(
        lines[2].starts_with(&format!("{file}:9: cache.max_size: invalid size \"12XB\"")),
        "{stdout}"
    );
    assert!(stderr.contains("3 problems"), "{stderr}");
}

#[test]
fn an_unreadable_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(&dir.path().join("missing.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn help_documents_both_commands() {
    let gw = sluice(&["gateway", "--help"]);
    let text = String::from_utf8_lossy(&gw.stdout);
    assert!(gw.status.success());
    assert!(
        text.contains("check") && text.contains("--config"),
        "{text}"
    );
    assert!(
        text.contains("sluice gateway --config examples/gateway.toml"),
        "{text}"
    );
    let ck = sluice(&["gateway", "check", "--help"]);
    let text = String::from_utf8_lossy(&ck.stdout);
    assert!(ck.status.success());
    assert!(text.contains("FILE:LINE: KEY.PATH: message"), "{text}");
    assert!(text.contains("2 the file cannot be read"), "{text}");
}
