"""Bounded load and fuzz runs against a facecheck service on this machine (loopback only).

Both are bounded in request count and time, and refuse any address that is
not loopback, so they can never become traffic to somebody else's server.
"""

from __future__ import annotations

import io
import ipaddress
import statistics
import struct
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image


def require_loopback(base_url: str) -> None:
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"load and fuzz runs only target this machine (127.0.0.1/localhost), not {host!r}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_load(
    base_url: str,
    image: bytes,
    clients: int,
    requests: int,
    max_seconds: float = 60.0,
    api_key: str | None = None,
) -> dict[str, Any]:
    """``requests`` uploads from ``clients`` concurrent clients (stopping early after ``max_seconds``)."""
    require_loopback(base_url)
    headers = {"X-API-Key": api_key} if api_key else {}
    deadline = time.perf_counter() + max_seconds
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    def worker(count: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60.0, headers=headers) as http:
            for _ in range(count):
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                try:
                    response = http.post("/v1/predict", files={"file": ("face.jpg", image, "image/jpeg")})
                    statuses[str(response.status_code)] += 1
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - started)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1

    shares = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(worker, shares))
    elapsed = time.perf_counter() - started
    milliseconds = [1000 * x for x in latencies]
    return {
        "clients": clients,
        "requests_sent": sum(statuses.values()),
        "ok": len(latencies),
        "errors": {k: v for k, v in statuses.items() if k != "200"},
        "seconds": elapsed,
        "throughput_per_s": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(milliseconds, 50),
        "p95_ms": percentile(milliseconds, 95),
        "p99_ms": percentile(milliseconds, 99),
        "mean_ms": statistics.mean(milliseconds) if milliseconds else float("nan"),
    }


@dataclass
class FuzzCase:
    name: str
    files: dict[str, tuple[str, bytes, str]] | None = None
    content: bytes | None = None
    content_type: str | None = None


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with (almost) no pixel data: a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\x00" * 64)
    data += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + data + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def fuzz_cases(count: int, seed: int = 0, valid: bytes | None = None) -> list[FuzzCase]:
    rng = np.random.default_rng(seed)
    if valid is None:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
        valid = buffer.getvalue()
    kinds = ["random", "truncated", "huge", "wrong_type", "wrong_field", "empty", "flipped_bytes", "raw_body"]
    cases = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        if kind == "random":
            payload = rng.bytes(int(rng.integers(1, 5000)))
            cases.append(FuzzCase(kind, {"file": ("x.jpg", payload, "image/jpeg")}))
        elif kind == "truncated":
            cut = int(rng.integers(1, len(valid)))
            cases.append(FuzzCase(kind, {"file": ("x.jpg", valid[:cut], "image/jpeg")}))
        elif kind == "huge":
            side = int(rng.integers(20_000, 65_000))
            cases.append(FuzzCase(kind, {"file": ("x.png", _png_header(side, side), "image/png")}))
        elif kind == "wrong_type":
            cases.append(FuzzCase(kind, {"file": ("x.exe", b"MZ" + rng.bytes(200), "application/x-msdownload")}))
        elif kind == "wrong_field":
            cases.append(FuzzCase(kind, {"upload": ("x.jpg", valid, "image/jpeg")}))
        elif kind == "empty":
            cases.append(FuzzCase(kind, {"file": ("x.jpg", b"", "image/jpeg")}))
        elif kind == "flipped_bytes":
            corrupted = bytearray(valid)
            for position in rng.integers(2, len(corrupted), 20):
                corrupted[position] ^= 0xFF
            cases.append(FuzzCase(kind, {"file": ("x.jpg", bytes(corrupted), "image/jpeg")}))
        else:
            cases.append(FuzzCase(kind, content=rng.bytes(300), content_type="application/octet-stream"))
    return cases


def run_fuzz(base_url: str, cases: list[FuzzCase], valid: bytes, api_key: str | None = None) -> dict[str, Any]:
    """Send every case, then check the service still answers /health and a valid prediction."""
    require_loopback(base_url)
    headers = {"X-API-Key": api_key} if api_key else {}
    outcomes: dict[str, Counter[int]] = {}
    server_errors = []
    with httpx.Client(base_url=base_url, timeout=60.0, headers=headers) as http:
        for case in cases:
            if case.files is not None:
                response = http.post("/v1/predict", files=case.files)
            else:
                response = http.post(
                    "/v1/predict", content=case.content, headers={"content-type": case.content_type or ""}
                )
            outcomes.setdefault(case.name, Counter())[response.status_code] += 1
            try:
                response.json()  # every answer, refusal or prediction, is JSON
                well_formed = True
            except ValueError:
                well_formed = False
            if response.status_code >= 500 or not well_formed:
                server_errors.append((case.name, response.status_code))
        health = http.get("/health").status_code
        after = http.post("/v1/predict", files={"file": ("ok.jpg", valid, "image/jpeg")})
    return {
        "cases": len(cases),
        "by_kind": {kind: dict(counts) for kind, counts in outcomes.items()},
        "server_errors": server_errors,
        "health_after": health,
        "valid_prediction_after": after.status_code,
        "ok": not server_errors and health == 200 and after.status_code == 200,
    }


def free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(base_url: str, seconds: float = 60.0) -> bool:
    """Poll ``/health`` until it answers 200 (True) or ``seconds`` pass (False)."""
    require_loopback(base_url)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False
