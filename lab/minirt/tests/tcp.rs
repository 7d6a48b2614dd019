//! Sockets on the reactor, and the echo server, over real loopback TCP.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use sluice_minirt::echo::{self, EchoConfig};
use sluice_minirt::{Runtime, TcpListener, TcpStream, channel, join, spawn};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Deterministic, varied bytes (no two blocks alike).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn accept_connect_read_write_on_one_runtime() {
    let rt = Runtime::new().unwrap();
    let data = pattern(1 << 20); // larger than the socket buffers: writes must wait
    let got = rt.block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = data.clone();
        let server = spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 7919]; // odd size: many short and full reads
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                got.extend_from_slice(&buf[..n]);
            }
        });
        let client = TcpStream::connect(addr).await.unwrap();
        client.write_all(&sent).await.unwrap();
        drop(client); // end of stream for the server
        server.await
    });
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
}

#[test]
fn connect_to_a_closed_port_fails() {
    let rt = Runtime::new().unwrap();
    let port = std::net::TcpListener::bind(loopback())
        .unwrap()
        .local_addr()
        .unwrap();
    // The listener is dropped: nothing listens there now.
    let err = rt
        .block_on(TcpStream::connect(port))
        .err()
        .expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

struct Server {
    addr: SocketAddr,
    stop: sluice_minirt::Sender<()>,
    thread: thread::JoinHandle<std::io::Result<echo::EchoReport>>,
}

fn start(config: EchoConfig) -> Server {
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = channel();
    let thread = thread::spawn(move || echo::run(listener, config, rx));
    Server { addr, stop, thread }
}

impl Server {
    fn stop(self) -> echo::EchoReport {
        // From this (another) thread: wakes the server parked in epoll.
        self.stop.send(()).unwrap();
        self.thread.join().unwrap().unwrap()
    }
}

#[test]
fn echo_is_byte_exact_for_many_concurrent_clients() {
    let server = start(EchoConfig::default());
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let addr = server.addr;
            thread::spawn(move || {
                let data = pattern(200_000 + i * 1013);
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                let mut r = s.try_clone().unwrap();
                let expected = data.clone();
                let reader = thread::spawn(move || {
                    let mut got = vec![0u8; expected.len()];
                    r.read_exact(&mut got).unwrap();
                    got == expected
                });
                for chunk in data.chunks(3001) {
                    s.write_all(chunk).unwrap();
                }
                let ok = reader.join().unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).unwrap();
                ok && rest.is_empty()
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap(), "a client got different bytes back");
    }
    let report = server.stop();
    assert_eq!(report.accepted, 8);
    assert_eq!(report.forced, 0);
}

#[test]
fn echo_refuses_above_the_limit_and_closes_idle_connections() {
    let server = start(EchoConfig {
        max_connections: 1,
        idle_timeout: Some(Duration::from_millis(100)),
        ..EchoConfig::default()
    });
    let mut first = std::net::TcpStream::connect(server.addr).unwrap();
    first.write_all(b"hi").unwrap();
    let mut buf = [0u8; 2];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    let mut second = std::net::TcpStream::connect(server.addr).unwrap();
    let mut rest = Vec::new();
    // Refused: closed at once (end of stream or a reset).
    let _ = second.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // Quiet for longer than the timeout: closed by the server.
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(first.read(&mut buf).unwrap(), 0);
    let report = server.stop();
    assert_eq!(
        (report.accepted, report.refused, report.idle_closed),
        (1, 1, 1),
        "{report:?}"
    );
}

#[test]
fn a_stop_closes_an_open_connection_through_the_drain() {
    let server = start(EchoConfig::default());
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.write_all(b"up").unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).unwrap();
    let report = server.stop();
    assert_eq!(
        (report.open_at_shutdown, report.forced),
        (1, 0),
        "{report:?}"
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn a_minirt_client_and_server_echo_on_one_thread() {
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = channel();
        let server = spawn(echo::serve(listener, EchoConfig::default(), stop_rx));
        let clients: Vec<_> = (0..50)
            .map(|i| {
                spawn(async move {
                    let s = TcpStream::connect(addr).await.unwrap();
                    let msg = format!("client {i}").into_bytes();
                    let mut buf = vec![0u8; msg.len()];
                    let mut got = 0;
                    let (w, ()) = join(s.write_all(&msg), async {}).await;
                    w.unwrap();
                    while got < msg.len() {
                        got += s.read(&mut buf[got..]).await.unwrap();
                    }
                    buf == msg
                })
            })
            .collect();
        for c in clients {
            assert!(c.await);
        }
        drop(stop_tx);
        let report = server.await.unwrap();
        assert_eq!(report.accepted, 50);
    });
}

#[test]
fn end_of_stream_after_a_short_read_is_seen_without_a_new_event() {
    // The peer's data and FIN arrive, and the reactor hears of both, before
    // the first read. That read is short (the socket is empty after it) and
    // no further event will come: the next read must still see the end.
    use sluice_minirt::{Either, select, sleep};
    let rt = Runtime::new().unwrap();
    let outcome = rt.block_on(async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(&[7u8; 100]).await.unwrap();
        drop(client);
        // Parks in epoll: the data and hang-up events are dispatched now.
        sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 4096];
        assert_eq!(server.read(&mut buf).await.unwrap(), 100);
        select(server.read(&mut buf), sleep(Duration::from_secs(5))).await
    });
    assert!(matches!(outcome, Either::Left(Ok(0))), "{outcome:?}");
}
