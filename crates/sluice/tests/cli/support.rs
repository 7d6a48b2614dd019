//! Starting the real `sluice` binary as a server, running its client
//! commands, and stopping it with SIGTERM (or SIGKILL) on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the child to take).
pub(crate) fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The binary with a clean environment for our variables.
pub(crate) fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    for var in [
        "SLUICE_SERVER",
        "SLUICE_TOKEN",
        "SLUICE_TOKENS",
        "SLUICE_DB",
        "SLUICE_DATA",
    ] {
        c.env_remove(var);
    }
    c.env("SLUICE_LOG", "warn");
    c
}

/// Runs a client command against `server` and returns its output.
pub(crate) fn run(server: &str, args: &[&str]) -> Output {
    sluice()
        .args(args)
        .args(["--server", server])
        .stdin(Stdio::null())
        .output()
        .expect("the sluice binary runs")
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A running child process, killed on drop.
pub(crate) struct Proc {
    pub(crate) child: Child,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sluice");
        Self { child }
    }

    /// Sends SIGTERM and waits (up to 30 s) for the exit status.
    pub(crate) fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sluice did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to 60 s) until `url` answers 200.
pub(crate) fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::blocking::get(url)
            && r.status().is_success()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} never answered 200");
}

/// A PostgreSQL schema of its own for one test (from
/// `SLUICE_TEST_POSTGRES_URL`), dropped at the end, even after a panic.
pub(crate) struct Schema {
    url: String,
    name: String,
}

impl Schema {
    /// `None` (after saying the test is skipped) when the URL is unset.
    pub(crate) fn from_env() -> Option<Self> {
        let url = match std::env::var("SLUICE_TEST_POSTGRES_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                eprintln!("skipping: SLUICE_TEST_POSTGRES_URL unset");
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("sluice_cli_{}_{nanos}", std::process::id());
        Some(Self { url, name })
    }

    /// The `--db` value: the server's URL with `schema=` in its query.
    pub(crate) fn db(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // A thread with its own runtime: the test may be running on one.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&mut c)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop schema {}: {dropped:?}", self.name);
        }
    }
}
