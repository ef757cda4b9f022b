"""Real protocol peers started for tests: an OpenSearch-compatible server (osmem-server)
and a stateful Stripe fake (localstripe, GPL: run as a separate process, never imported)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from osmem_server import OsmemServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def search_server() -> Iterator[OsmemServer]:
    server = OsmemServer.start(addr="127.0.0.1:0")
    try:
        yield server
    finally:
        server.close()


@contextmanager
def stripe_server() -> Iterator[str]:
    """localstripe on a free port; yields its base URL."""
    port = free_port()
    binary = shutil.which("localstripe") or str(Path(sys.executable).parent / "localstripe")
    process = subprocess.Popen(
        [binary, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/v1/customers", auth=("sk_test_peer", ""), timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("localstripe did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
