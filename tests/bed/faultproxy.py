"""An HTTP proxy in front of an S3 endpoint that injects faults into a chosen share of requests:

  slowdown  503 SlowDown, the request not forwarded
  error     500 InternalError, the request not forwarded
  reset     the connection closed before forwarding (no response)
  delay     forwarded after 0.3-1.5 s
  lost      forwarded and applied by the store, then the connection closed: the response is lost

With `--lose-first SUBSTRING`, the response to the first PUT whose path contains SUBSTRING is
lost, whatever the rate (a deterministic lost response).

Every request is logged as one JSON line (kind, `none` when nothing was injected; method; path).
Usage:

  python faultproxy.py --listen 18095 --upstream 127.0.0.1:18000 --rate 0.05 --seed 7 --log F
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal

KINDS = [("slowdown", 0.30), ("error", 0.10), ("reset", 0.20), ("delay", 0.20), ("lost", 0.20)]

SLOWDOWN = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>"
            b"<Message>Please reduce your request rate.</Message></Error>")
INTERNAL = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>"
            b"<Message>We encountered an internal error. Please try again.</Message></Error>")


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def with_close(head: bytes) -> bytes:
    lines = [l for l in head.rstrip(b"\r\n").split(b"\r\n") if not l.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"


def error_response(status: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/xml\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class Proxy:
    def __init__(self, upstream: str, rate: float, seed: int, log_path: str, lose_first: str | None):
        self.host, port = upstream.rsplit(":", 1)
        self.port = int(port)
        self.rate = rate
        self.rng = random.Random(seed)
        self.log = open(log_path, "a", buffering=1)
        self.lose_first = lose_first

    def pick(self) -> str:
        if self.rng.random() >= self.rate:
            return "none"
        x, acc = self.rng.random(), 0.0
        for kind, share in KINDS:
            acc += share
            if x < acc:
                return kind
        return KINDS[-1][0]

    async def forward(self, head: bytes, body: bytes) -> bytes:
        r, w = await asyncio.open_connection(self.host, self.port)
        try:
            w.write(with_close(head) + body)
            await w.drain()
            return await r.read()
        finally:
            w.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    return
                body = await reader.readexactly(content_length(head))
                method, path = head.split(b" ", 2)[:2]
                kind = self.pick()
                if self.lose_first and method == b"PUT" and self.lose_first.encode() in path:
                    kind, self.lose_first = "lost", None
                self.log.write(json.dumps({"kind": kind, "method": method.decode(),
                                           "path": path.decode()}) + "\n")
                if kind == "slowdown":
                    writer.write(error_response(b"503 Slow Down", SLOWDOWN))
                elif kind == "error":
                    writer.write(error_response(b"500 Internal Server Error", INTERNAL))
                elif kind == "reset":
                    return
                else:
                    if kind == "delay":
                        await asyncio.sleep(self.rng.uniform(0.3, 1.5))
                    response = await self.forward(head, body)
                    if kind == "lost":
                        return
                    writer.write(response)
                    # The upstream answered with Connection: close; so do we.
                    await writer.drain()
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--rate", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log", required=True)
    p.add_argument("--lose-first")
    a = p.parse_args()
    proxy = Proxy(a.upstream, a.rate, a.seed, a.log, a.lose_first)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", a.listen)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
