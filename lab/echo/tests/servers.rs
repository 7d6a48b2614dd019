//! Every server, the same tests: bytes come back exactly (many sizes, split
//! writes, concurrent clients), the connection limit refuses and counts,
//! the idle timeout closes quiet connections only, the drain echoes what
//! was received and then closes, and the deadline forces what will not end.
//!
//! No test asserts how long something took; the time limits below only stop
//! a broken server from hanging the suite.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown as Side, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sluice_echo::{Config, Kind, Running};

/// Long enough that only a hung server hits it.
const PATIENCE: Duration = Duration::from_secs(20);

fn start(kind: Kind, config: Config) -> Running {
    Running::start(kind, "127.0.0.1:0".parse().unwrap(), config).unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One round trip; panics if the echo differs.
fn echo(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

/// Reads until end of stream or reset; panics on a read that times out
/// (the server left the connection open). Returns the bytes read.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("expected the server to close the connection, got {e}"),
        }
    }
}

/// Sends `data` in random-sized writes from one thread while this one
/// reads the echo, so neither side waits on a full buffer.
fn split_round_trip(addr: SocketAddr, data: Vec<u8>, seed: u64) {
    let mut s = connect(addr);
    let mut writer = s.try_clone().unwrap();
    let len = data.len();
    let sender = thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut at = 0;
        while at < data.len() {
            let n = rng.random_range(1..=9000).min(data.len() - at);
            writer.write_all(&data[at..at + n]).unwrap();
            at += n;
        }
        data
    });
    let mut back = vec![0; len];
    s.read_exact(&mut back).unwrap();
    let data = sender.join().unwrap();
    assert!(back == data, "echo of {len} bytes differs");
}

fn byte_exact(kind: Kind) {
    let server = start(kind, Config::default());
    let addr = server.addr();
    let sizes = [
        1usize,
        2,
        7,
        100,
        1023,
        4095,
        4096,
        4097,
        65_536,
        300_001,
        2 << 20,
    ];
    let clients: Vec<_> = (0..8u64)
        .map(|c| {
            thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(c);
                for (i, &size) in sizes.iter().enumerate() {
                    let mut data = vec![0; size];
                    rng.fill_bytes(&mut data);
                    split_round_trip(addr, data, c * 100 + i as u64);
                }
                // Many small messages on one connection.
                let mut s = connect(addr);
                for _ in 0..200 {
                    let mut msg = vec![0; rng.random_range(1..300)];
                    rng.fill_bytes(&mut msg);
                    echo(&mut s, &msg);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let report = server.stop().unwrap();
    assert_eq!(report.accepted, 8 * (sizes.len() as u64 + 1));
    assert_eq!((report.refused, report.forced), (0, 0));
}

fn limit(kind: Kind) {
    let server = start(
        kind,
        Config {
            max_connections: 2,
            ..Config::default()
        },
    );
    let mut a = connect(server.addr());
    let mut b = connect(server.addr());
    echo(&mut a, b"a");
    echo(&mut b, b"b");
    // A third is accepted by the kernel, then closed by the server.
    let mut c = connect(server.addr());
    let _ = c.write_all(b"c");
    assert!(read_to_close(&mut c).is_empty());
    // The first two are untouched.
    echo(&mut a, b"still here");
    echo(&mut b, b"me too");
    // Once one leaves, a newcomer is served.
    drop(a);
    let mut d = loop {
        let mut d = connect(server.addr());
        let _ = d.write_all(b"d");
        let mut one = [0u8; 1];
        match d.read(&mut one) {
            Ok(1) => break d,
            // Still counted as open for a moment: refused, try again.
            _ => thread::sleep(Duration::from_millis(20)),
        }
    };
    echo(&mut d, b"served");
    let report = server.stop().unwrap();
    assert!(report.refused >= 1, "{report:?}");
    assert_eq!(report.accepted, 3, "{report:?}");
}

fn idle(kind: Kind) {
    let server = start(
        kind,
        Config {
            idle_timeout: Some(Duration::from_millis(300)),
            ..Config::default()
        },
    );
    // A busy client, sending far more often than the timeout, stays open
    // while a quiet one is closed.
    let mut busy = connect(server.addr());
    let mut quiet = connect(server.addr());
    echo(&mut quiet, b"hello");
    let waiter = thread::spawn(move || read_to_close(&mut quiet));
    for _ in 0..20 {
        echo(&mut busy, b"ping");
        thread::sleep(Duration::from_millis(30));
    }
    assert!(waiter.join().unwrap().is_empty());
    echo(&mut busy, b"still open");
    let report = server.stop().unwrap();
    assert!(report.idle_closed >= 1, "{report:?}");
    assert_eq!(report.open_at_shutdown, 1, "{report:?}");
}

fn drain(kind: Kind) {
    let server = start(kind, Config::default());
    let addr = server.addr();
    // Three clients each send 16 KiB (little enough to be in the server's
    // receive queue when `write_all` returns) and read nothing yet; an idle
    // one sends nothing.
    let mut senders: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    let mut idle = connect(addr);
    echo(&mut idle, b"x");
    let mut rng = StdRng::seed_from_u64(7);
    let payloads: Vec<Vec<u8>> = senders
        .iter_mut()
        .map(|s| {
            let mut data = vec![0; 16 * 1024];
            rng.fill_bytes(&mut data);
            s.write_all(&data).unwrap();
            data
        })
        .collect();
    let signal = server.shutdown_signal().clone();
    let stopper = thread::spawn(move || server.stop().unwrap());
    signal.trigger();
    // Every sender gets its bytes back, then end of stream.
    for (s, data) in senders.iter_mut().zip(&payloads) {
        let got = read_to_close(s);
        assert!(
            got == *data,
            "drained {} of {} bytes",
            got.len(),
            data.len()
        );
    }
    assert!(read_to_close(&mut idle).is_empty());
    let report = stopper.join().unwrap();
    assert_eq!(report.open_at_shutdown, 4, "{report:?}");
    assert_eq!(report.forced, 0, "{report:?}");
    // The listener is gone.
    assert!(TcpStream::connect(addr).is_err());
}

fn forced(kind: Kind) {
    let server = start(
        kind,
        Config {
            drain_deadline: Duration::from_millis(300),
            ..Config::default()
        },
    );
    // This client writes far more than the socket buffers hold and never
    // reads: the server blocks writing its echo and cannot finish.
    let s = connect(server.addr());
    let mut w = s.try_clone().unwrap();
    let flood = thread::spawn(move || {
        let chunk = vec![0x5a; 1 << 20];
        for _ in 0..256 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let mut probe = connect(server.addr());
    echo(&mut probe, b"up");
    thread::sleep(Duration::from_millis(200));
    let report = server.stop().unwrap();
    assert_eq!(report.open_at_shutdown, 2, "{report:?}");
    assert_eq!(report.forced, 1, "{report:?}");
    let _ = s.shutdown(Side::Both);
    flood.join().unwrap();
}

macro_rules! for_each_server {
    ($($kind:ident => $module:ident),*) => {$(
        mod $module {
            use super::*;
            #[test] fn byte_exact() { super::byte_exact(Kind::$kind) }
            #[test] fn limit() { super::limit(Kind::$kind) }
            #[test] fn idle() { super::idle(Kind::$kind) }
            #[test] fn drain() { super::drain(Kind::$kind) }
            #[test] fn forced() { super::forced(Kind::$kind) }
        }
    )*};
}

for_each_server!(Threaded => threaded, Pooled => pooled, Tokio => tokio, Minirt => minirt);

#[test]
fn kinds_parse_by_name() {
    for kind in Kind::ALL {
        assert_eq!(kind.name().parse::<Kind>().unwrap(), kind);
    }
    assert!("fibers".parse::<Kind>().is_err());
}

#[test]
fn a_bad_config_is_refused() {
    let err = Running::start(
        Kind::Tokio,
        "127.0.0.1:0".parse().unwrap(),
        Config {
            buffer_size: 0,
            ..Config::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("buffer_size"), "{err}");
}
