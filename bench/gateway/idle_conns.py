#!/usr/bin/env python3
"""Open N keep-alive connections to a proxy, make one request on each, then hold them idle.

Prints "ready OPEN FAILED" on stdout once every connection has answered (or
failed), then keeps the connections open until stdin closes or --hold seconds
pass, whichever is first. Used by bench/gateway.sh to read the proxy's RSS with
N idle keep-alive connections. Loopback only; every wait is bounded.
"""
import argparse
import asyncio
import resource
import sys

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: idle-conns\r\n\r\n"


async def one(host, port, sem, conns, timeout):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            w.write(REQUEST)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
            status = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(r.readexactly(length), timeout)
            if not status.startswith(b"2"):
                w.close()
                return False
            conns.append((r, w))
            return True
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            return False


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=200, help="connections being opened at once")
    ap.add_argument("--timeout", type=float, default=10.0, help="per connect/read, seconds")
    ap.add_argument("--hold", type=float, default=120.0, help="max seconds to hold the connections")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.n + 1000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    sem = asyncio.Semaphore(a.parallel)
    started = asyncio.get_running_loop().time()
    conns = []
    results = await asyncio.gather(*(one(a.host, a.port, sem, conns, a.timeout) for _ in range(a.n)))
    ok = sum(results)
    took = asyncio.get_running_loop().time() - started
    print(f"ready {ok} {a.n - ok} {took:.1f}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    try:
        await asyncio.wait_for(stdin_closed, a.hold)
    except asyncio.TimeoutError:
        pass
    # Count the connections the proxy closed while they sat idle.
    closed = sum(1 for r, _ in conns if r.at_eof())
    print(f"closed_while_idle {closed}", flush=True)
    for _, w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
