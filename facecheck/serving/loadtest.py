"""Bounded load and fuzz runs against a facecheck service on this machine (loopback only).

Both are bounded in request count and time, and refuse any address that is
not loopback, so they can never become traffic to somebody else's server.
"""

from __future__ import annotations

import io
import ipaddress
import statistics
import struct
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
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


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (Linux), or None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class RssSampler:
    """Resident memory of a server process on this machine: before, at peak (sampled in a thread) and after.

    Without a ``pid`` it measures nothing and reports nothing.
    """

    def __init__(self, pid: int | None, interval_s: float = 0.05) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.before = self.peak = self.after = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = rss_mb(self.pid) if self.pid else None
            if value is not None:
                self.peak = max(self.peak or 0.0, value)

    def __enter__(self) -> RssSampler:
        if self.pid:
            self.before = self.peak = rss_mb(self.pid)
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.after = rss_mb(self.pid) if self.pid else None
            self.peak = max(self.peak or 0.0, self.after or 0.0)

    def report(self) -> dict[str, float]:
        if self.before is None:
            return {}
        return {
            "rss_before_mb": round(self.before, 1),
            "rss_peak_mb": round(self.peak or 0.0, 1),
            "rss_after_mb": round(self.after or 0.0, 1),
        }


def run_load(
    base_url: str,
    image: bytes,
    clients: int,
    requests: int,
    max_seconds: float = 60.0,
    api_key: str | None = None,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """``requests`` uploads from ``clients`` concurrent clients (stopping early after ``max_seconds``).

    With ``server_pid``, the server's resident memory before, at peak and after (its drift over the run).
    """
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
    with RssSampler(server_pid) as memory, ThreadPoolExecutor(max_workers=clients) as pool:
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
    } | memory.report()


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


def _encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def sixteen_bit_png(side: int, seed: int = 0) -> bytes:
    """A 16-bit greyscale PNG of ``side`` x ``side`` that compresses to little (a sparse pattern): cheap to
    send, costly to decode the naive way."""
    pixels = np.zeros((side, side), dtype=np.uint16)
    rng = np.random.default_rng(seed)
    pixels[:: int(rng.integers(5, 9)), :: int(rng.integers(3, 7))] = 40000
    return _encoded(Image.fromarray(pixels), "PNG")


def _huge_jpeg(valid_jpeg: bytes, width: int, height: int) -> bytes:
    """``valid_jpeg`` with its frame header claiming ``width`` x ``height``."""
    data = bytearray(valid_jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            data[at + 5 : at + 9] = struct.pack(">HH", height, width)
            break
    return bytes(data)


def _huge_bmp(width: int, height: int) -> bytes:
    data = bytearray(_encoded(Image.new("RGB", (4, 4)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


FUZZ_KINDS = (
    "random", "truncated", "truncated_png", "huge", "huge_jpeg", "huge_bmp", "png16", "animated_gif",
    "animated_png", "zero_bytes", "wrong_type", "wrong_content_type", "wrong_field", "empty", "flipped_bytes",
    "raw_body",
)  # fmt: skip


def fuzz_cases(count: int, seed: int = 0, valid: bytes | None = None) -> list[FuzzCase]:
    """``count`` hostile uploads, cycling through :data:`FUZZ_KINDS` (each kind with its own random details)."""
    rng = np.random.default_rng(seed)
    if valid is None:
        valid = _encoded(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    valid_png = _encoded(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    frames = [Image.new("RGB", (48, 48), (i * 60, 90, 200 - i * 40)) for i in range(4)]
    cases = []
    for index in range(count):
        kind = FUZZ_KINDS[index % len(FUZZ_KINDS)]
        file = None
        if kind == "random":
            file = ("x.jpg", rng.bytes(int(rng.integers(1, 5000))), "image/jpeg")
        elif kind == "truncated":
            file = ("x.jpg", valid[: int(rng.integers(1, len(valid)))], "image/jpeg")
        elif kind == "truncated_png":
            file = ("x.png", valid_png[: int(rng.integers(1, len(valid_png)))], "image/png")
        elif kind == "huge":
            side = int(rng.integers(20_000, 65_000))
            file = ("x.png", _png_header(side, side), "image/png")
        elif kind == "huge_jpeg":
            file = ("x.jpg", _huge_jpeg(valid, int(rng.integers(10_000, 65_000)), 65_000), "image/jpeg")
        elif kind == "huge_bmp":
            file = ("x.bmp", _huge_bmp(int(rng.integers(10_000, 60_000)), 60_000), "image/bmp")
        elif kind == "png16":
            file = ("x.png", sixteen_bit_png(int(rng.integers(500, 3000)), index), "image/png")
        elif kind == "animated_gif":
            file = ("x.gif", _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]), "image/gif")
        elif kind == "animated_png":
            file = ("x.png", _encoded(frames[0], "PNG", save_all=True, append_images=frames[1:]), "image/png")
        elif kind == "zero_bytes":
            file = ("x.jpg", bytes(int(rng.integers(1, 100_000))), "image/jpeg")
        elif kind == "wrong_type":
            file = ("x.exe", b"MZ" + rng.bytes(200), "application/x-msdownload")
        elif kind == "wrong_content_type":
            file = ("notes.txt", valid, "text/plain")  # a real image, declared as text: judged by content
        elif kind == "wrong_field":
            cases.append(FuzzCase(kind, {"upload": ("x.jpg", valid, "image/jpeg")}))
        elif kind == "empty":
            file = ("x.jpg", b"", "image/jpeg")
        elif kind == "flipped_bytes":
            corrupted = bytearray(valid)
            for position in rng.integers(2, len(corrupted), 20):
                corrupted[position] ^= 0xFF
            file = ("x.jpg", bytes(corrupted), "image/jpeg")
        else:
            cases.append(FuzzCase(kind, content=rng.bytes(300), content_type="application/octet-stream"))
        if file is not None:
            cases.append(FuzzCase(kind, {"file": file}))
    return cases


def run_fuzz(
    base_url: str, cases: list[FuzzCase], valid: bytes, api_key: str | None = None, server_pid: int | None = None
) -> dict[str, Any]:
    """Send every case, then check the service still answers /health and a valid prediction.

    With ``server_pid`` (a server on this machine), its resident memory before, at peak and after is reported.
    """
    require_loopback(base_url)
    headers = {"X-API-Key": api_key} if api_key else {}
    outcomes: dict[str, Counter[int]] = {}
    server_errors = []
    memory = RssSampler(server_pid)
    with memory, httpx.Client(base_url=base_url, timeout=60.0, headers=headers) as http:
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
    } | memory.report()


def health_while_decoding(
    base_url: str,
    heavy: bytes,
    uploaders: int,
    seconds: float,
    api_key: str | None = None,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """``/health`` latency (polled every 0.1 s) while ``uploaders`` clients keep sending ``heavy`` images.

    At most ``seconds`` long and 10 heavy uploads a second per uploader; with ``server_pid``, the server's RSS.
    """
    require_loopback(base_url)
    headers = {"X-API-Key": api_key} if api_key else {}
    deadline = time.perf_counter() + seconds
    uploads: Counter[str] = Counter()
    upload_ms: list[float] = []

    def uploader() -> None:
        with httpx.Client(base_url=base_url, timeout=120.0, headers=headers) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = http.post("/v1/predict", files={"file": ("big.png", heavy, "image/png")})
                    uploads[str(response.status_code)] += 1
                    upload_ms.append(1000 * (time.perf_counter() - started))
                except httpx.HTTPError as exc:
                    uploads[type(exc).__name__] += 1
                time.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))

    threads = [threading.Thread(target=uploader, daemon=True) for _ in range(uploaders)]
    for thread in threads:
        thread.start()
    health_ms: list[float] = []
    health_errors: Counter[str] = Counter()
    with RssSampler(server_pid) as memory, httpx.Client(base_url=base_url, timeout=30.0) as http:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                if http.get("/health").status_code == 200:
                    health_ms.append(1000 * (time.perf_counter() - started))
                else:
                    health_errors["status"] += 1
            except httpx.HTTPError as exc:
                health_errors[type(exc).__name__] += 1
            time.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))
        for thread in threads:
            thread.join(timeout=150)
    return {
        "uploaders": uploaders,
        "heavy_bytes": len(heavy),
        "uploads": dict(uploads),
        "upload_p50_ms": percentile(upload_ms, 50),
        "health_checks": len(health_ms),
        "health_errors": dict(health_errors),
        "health_p50_ms": percentile(health_ms, 50),
        "health_p99_ms": percentile(health_ms, 99),
        "health_max_ms": max(health_ms) if health_ms else float("nan"),
    } | memory.report()


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
