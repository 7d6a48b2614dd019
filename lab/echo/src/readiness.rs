//! A socket read that tells tokio when it has emptied the socket, shared by
//! the tokio echo server and the load generator.
//!
//! tokio forgets a socket's readiness only when a read fails with
//! `WouldBlock`, so a loop of `AsyncReadExt::read` (or `read_exact`) makes a
//! failed `read` system call per message: the task handles the message,
//! loops, and tries again before the peer's next one can have arrived.
//! When the caller knows a read has emptied the socket, that failed call is
//! wasted: with edge-triggered epoll any later bytes raise a new event. So
//! the read runs inside `try_io` and, when the caller's rule says the
//! socket is now empty, reports `WouldBlock` (keeping its count), which
//! clears the readiness. Two system calls per echo instead of three (as
//! `pooled.rs` and `crates/gateway/src/socket.rs` do by hand).

use std::io::{self, Read as _};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Reads what the socket holds into `buf`, waiting until it is readable.
/// After a read of `n > 0` bytes for which `emptied(n)` is true, tokio is
/// told the socket is empty. A wrong `true` leaves bytes nobody is woken
/// for, so the rule must be certain: a short read (the server's), or one
/// message in flight that this read completed (the load generator's).
/// Cancel-safe: nothing is read until the socket is ready, and then without
/// waiting.
pub(crate) async fn read_forgetting(
    stream: &TcpStream,
    buf: &mut [u8],
    emptied: impl Fn(usize) -> bool,
) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        let mut forgot = None;
        let read = stream.try_io(Interest::READABLE, || {
            let n = (&*socket2::SockRef::from(stream)).read(buf)?;
            if n > 0 && emptied(n) {
                forgot = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match read {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(n) = forgot {
                    return Ok(n);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
