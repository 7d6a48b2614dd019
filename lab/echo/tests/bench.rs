//! The load generator against real servers: closed and open loop count
//! echoes and latencies, idle connections stay open without sending, the
//! server's memory is read, and a server that never answers fails the
//! warm-up instead of hanging the run.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use sluice_echo::bench::{self, BenchError, LoadConfig, Mode};
use sluice_echo::{Config, Kind, Running};

fn server(kind: Kind) -> Running {
    Running::start(kind, "127.0.0.1:0".parse().unwrap(), Config::default()).unwrap()
}

#[test]
fn closed_loop_counts_echoes_and_reads_memory() {
    let server = server(Kind::Tokio);
    let mut load = LoadConfig::new(server.addr(), 20);
    load.active = 15;
    load.duration = Duration::from_millis(500);
    // The server runs in this process: its RSS is ours.
    load.server_pid = Some(std::process::id());
    let report = bench::run(&load).unwrap();
    assert_eq!((report.connections, report.active), (20, 15));
    assert!(report.messages > 0);
    assert_eq!(report.latency.len(), report.messages);
    assert_eq!((report.errors, report.unfinished), (0, 0));
    assert!(
        report.service.is_empty(),
        "closed loop keeps no service times"
    );
    if std::path::Path::new("/proc/self/status").exists() {
        assert!(report.rss_per_connection().is_some());
    }
    if std::path::Path::new("/proc/self/stat").exists() {
        // Server and load generator are this process, read moments apart.
        let (server, client) = (report.server_cpu.unwrap(), report.client_cpu.unwrap());
        assert!(
            server > Duration::ZERO,
            "half a second of echoes cost no CPU"
        );
        assert!(server.abs_diff(client) <= Duration::from_millis(20));
        assert!(report.server_cpu_per_echo().is_some());
    }
    let json = report.json();
    assert_eq!(json["connections"], 20);
    assert!(json["messages_per_second"].as_f64().unwrap() > 0.0);
    let served = server.stop().unwrap();
    // Every connection, idle ones included, was accepted and kept open
    // through the run (none refused, none closed early).
    assert_eq!(served.accepted, 20);
    assert_eq!(served.refused, 0);
}

#[test]
fn open_loop_sends_on_schedule() {
    let server = server(Kind::Threaded);
    let mut load = LoadConfig::new(server.addr(), 4);
    load.duration = Duration::from_millis(1000);
    // 400 messages/s over 4 connections: 100 each per second, 10 ms apart.
    load.mode = Mode::Open { rate: 400.0 };
    let report = bench::run(&load).unwrap();
    assert_eq!((report.errors, report.unfinished), (0, 0));
    // The schedule fixes the count, whatever the server's speed: 100 per
    // connection are due in 1 s, never more. Echoes that land after the end
    // are not counted, so the lower bound is loose (a slow machine).
    assert!(
        (100..=400).contains(&report.messages),
        "{} messages",
        report.messages
    );
    assert_eq!(report.service.len(), report.messages);
    server.stop().unwrap();
}

#[test]
fn a_server_that_never_answers_fails_the_warm_up() {
    // Accepts (the kernel does, through the backlog) but never reads.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut load = LoadConfig::new(silent.local_addr().unwrap(), 3);
    load.warmup_timeout = Duration::from_millis(300);
    match bench::run(&load) {
        Err(BenchError::Warmup { done, wanted, .. }) => assert_eq!((done, wanted), (0, 3)),
        other => panic!("expected a warm-up failure, got {other:?}"),
    }
    // Keep the listener alive until here; drain what was sent.
    silent.set_nonblocking(true).unwrap();
    while let Ok((mut s, _)) = silent.accept() {
        let _ = s.read(&mut [0u8; 64]);
    }
}

#[test]
fn an_echo_that_arrives_in_pieces_is_still_read_whole() {
    // A server that answers each 64-byte message in two writes 20 ms apart:
    // the load generator's read takes the first piece, forgets the socket's
    // readiness, and must still be woken for the second.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut msg = [0u8; 64];
        let mut echoes = 0u32;
        while s.read_exact(&mut msg).is_ok() {
            s.write_all(&msg[..10]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(&msg[10..]).unwrap();
            echoes += 1;
        }
        echoes
    });
    let mut load = LoadConfig::new(addr, 1);
    load.duration = Duration::from_millis(300);
    let report = bench::run(&load).unwrap();
    assert_eq!((report.errors, report.unfinished), (0, 0));
    // About 300 / 20 = 15 echoes, whatever the machine: each waits 20 ms.
    assert!(
        (3..=15).contains(&report.messages),
        "{} messages",
        report.messages
    );
    // Warm-up echo plus the timed ones (and one finished after the end).
    let echoed = server.join().unwrap();
    assert!(u64::from(echoed) > report.messages);
}
