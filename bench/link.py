"""A userspace TCP proxy that shapes a link: rate, one-way delay, bounded buffer.

    python -m tether.bench.link --target 127.0.0.1:7000 --rate 100e6 --delay 0.02

prints the port it listens on. Each direction is one serial link shared by
all connections: a chunk leaves when the link is free (rate), arrives
`delay` later, and the proxy stops reading once a direction holds more than
its buffer (bandwidth x delay plus 20 ms of queue), so a full link pushes
back on the sender through TCP. With `--cut-min/--cut-max` it also resets
each connection after a random number of bytes towards the client (with
`--cut-up`, either way: an upload's), the reliability tests' fault injector.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass

CHUNK = 256 << 10
QUEUE_SECONDS = 0.02


@dataclass(frozen=True)
class Link:
    """A network path: `rate` in bits/s (None: unshaped), `delay` one way in seconds."""

    name: str
    rate: float | None
    delay: float = 0.0

    @property
    def shaped(self) -> bool:
        return self.rate is not None or self.delay > 0

    def describe(self) -> str:
        if not self.shaped:
            return f"{self.name} (unshaped)"
        rate = f"{self.rate / 1e6:g} Mbit/s" if self.rate else "unlimited"
        return f"{self.name} ({rate}, {self.delay * 1e3:g} ms each way)"


PRESETS = {
    "loopback": Link("loopback", None),
    "home": Link("home", 50e6, 0.030),
    "100mbit": Link("100mbit", 100e6, 0.020),
    "1gbit": Link("1gbit", 1e9, 0.001),
    "uplink": Link("uplink", 20e6, 0.025),  # a home upload: a laptop's data to a cloud GPU
}


def parse_rate(text: str) -> float:
    """'80Mbit', '1Gbit', '500kbit' or bits/s -> bits/s."""
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    lowered = text.strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return float(lowered[: -len(unit)]) * factor
    return float(lowered)


def parse_seconds(text: str) -> float:
    lowered = text.strip().lower()
    if lowered.endswith("ms"):
        return float(lowered[:-2]) / 1e3
    return float(lowered.rstrip("s"))


def custom_link(bandwidth: str, rtt: str) -> Link:
    rate, delay = parse_rate(bandwidth), parse_seconds(rtt) / 2
    return Link(f"{bandwidth}/{rtt}", rate, delay)


class Direction:
    """One way of the link: when each chunk may arrive, and how much may queue."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.free_at = 0.0
        rate_bytes = (link.rate or 8e9) / 8
        self.buffer = max(256 << 10, int(rate_bytes * (link.delay + QUEUE_SECONDS)))

    def arrival(self, now: float, nbytes: int) -> float:
        if self.link.rate is None:
            return now + self.link.delay
        self.free_at = max(now, self.free_at) + nbytes * 8 / self.link.rate
        return self.free_at + self.link.delay


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:  # SO_LINGER 0: close with RST, as a dropped link looks
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pump(reader, writer, direction: Direction, cut_at: int | None,
                on_cut) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    state = {"held": 0}
    room = asyncio.Event()
    room.set()

    async def deliver() -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            state["held"] -= len(data)
            room.set()
        if writer.can_write_eof():
            writer.write_eof()

    delivering = asyncio.create_task(deliver())
    sent = 0
    try:
        while data := await reader.read(CHUNK):
            sent += len(data)
            if cut_at is not None and sent >= cut_at:
                on_cut()
                return
            await queue.put((direction.arrival(loop.time(), len(data)), data))
            state["held"] += len(data)
            while state["held"] > direction.buffer:
                room.clear()
                await room.wait()
        await queue.put(None)
        await delivering
    finally:
        delivering.cancel()


async def _serve(target: tuple[str, int], link: Link, cut_range: tuple[int, int] | None,
                 seed: int, cut_up: bool = False) -> None:
    up, down = Direction(link), Direction(link)
    rng = random.Random(seed)

    async def handle(client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            _reset(client_writer)
            return
        for w in (client_writer, server_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cut_at = rng.randint(*cut_range) if cut_range else None

        def cut() -> None:
            print(f"cut after {cut_at} bytes", file=sys.stderr, flush=True)
            _reset(client_writer)
            _reset(server_writer)

        pumps = [asyncio.create_task(_pump(client_reader, server_writer, up,
                                           cut_at if cut_up else None, cut)),
                 asyncio.create_task(_pump(server_reader, client_writer, down, cut_at, cut))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.wait(pumps, timeout=1.0)  # let the other side finish its EOF
        except (ConnectionError, OSError):
            pass
        finally:
            for task in pumps:
                task.cancel()
            for w in (client_writer, server_writer):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class ShapedProxy:
    """Runs the proxy in a subprocess in front of `target`; `.port` is where to connect."""

    def __init__(self, target: tuple[str, int], link: Link,
                 cut_range: tuple[int, int] | None = None, seed: int = 0,
                 cut_up: bool = False) -> None:
        args = [sys.executable, "-m", "tether.bench.link", "--target", f"{target[0]}:{target[1]}",
                "--delay", str(link.delay), "--seed", str(seed)]
        if link.rate is not None:
            args += ["--rate", str(link.rate)]
        if cut_range:
            args += ["--cut-min", str(cut_range[0]), "--cut-max", str(cut_range[1]),
                     *(["--cut-up"] if cut_up else [])]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.proc.kill()
            raise RuntimeError(f"link proxy failed to start: {self.proc.stderr.read()}")
        self.port = int(line)

    def close(self) -> str:
        """Stop the proxy; returns what it logged (one line per cut)."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err

    def __enter__(self) -> ShapedProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--rate", type=float, default=None, help="bits per second")
    parser.add_argument("--delay", type=float, default=0.0, help="one-way delay, seconds")
    parser.add_argument("--cut-min", type=int, default=None)
    parser.add_argument("--cut-max", type=int, default=None)
    parser.add_argument("--cut-up", action="store_true",
                        help="count the client's bytes too (uploads), not only the server's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    host, port = args.target.rsplit(":", 1)
    cut = (args.cut_min, args.cut_max) if args.cut_min is not None else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve((host, int(port)), Link("cli", args.rate, args.delay), cut, args.seed,
                           args.cut_up))


if __name__ == "__main__":
    main()
