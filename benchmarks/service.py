"""Service benchmark: latency at 1, 4 and 16 clients, a hostile-upload fuzz run, a soak run and /health under load.

    python benchmarks/service.py --model runs/mnv2 [--backend onnx] [--requests 200] [--out benchmarks/results]
    python benchmarks/service.py --fuzz 10000 --soak-seconds 600 --health-seconds 60      # the full runs
    python benchmarks/service.py --clients "" --fuzz 500 --soak-seconds 30 --health-seconds 20  # reduced

Starts `facecheck serve` on 127.0.0.1 (a free port) and only ever talks to
that server. Every part is bounded in requests and in time:

- load levels: --requests per level, never longer than --max-seconds;
- fuzz: --fuzz hostile uploads (random bytes, truncated JPEG/PNG, huge sizes
  in PNG/JPEG/BMP headers, 16-bit PNGs, animated GIF/PNG, zero bytes, wrong
  types and fields...) counting 5xx, with the server's memory (RSS) before,
  at peak and after;
- soak: --soak-clients clients for --soak-seconds (errors, p50/p99, RSS drift);
- health: /health latency while --health-uploaders clients send a 16-bit PNG
  of --heavy-side pixels a side (decoded under the pixel limit).

Without --model an untrained seed-cnn checkpoint is written to a temporary
folder: the service's behaviour, not the model's accuracy, is measured.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from facecheck.serving.loadtest import (
    free_loopback_port,
    fuzz_cases,
    health_while_decoding,
    rss_mb,
    run_fuzz,
    run_load,
    sixteen_bit_png,
    wait_until_healthy,
)


def untrained_model(folder: Path) -> Path:
    from facecheck.checkpoint import build_model, card_for, save_checkpoint
    from facecheck.config import get_preset
    from facecheck.models.registry import with_model_defaults

    config = with_model_defaults(get_preset("seed-cnn"))
    save_checkpoint(folder / "m.pt", build_model(config), card_for(config, epoch=0, metrics={}))
    return folder / "m.pt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="run folder, checkpoint or .onnx (default: an untrained seed-cnn)")
    parser.add_argument("--backend", choices=("torch", "onnx", "openvino"), default="torch")
    parser.add_argument("--image", help="image to send (default: a 256x256 JPEG of noise)")
    parser.add_argument("--clients", default="1,4,16", help="load levels ('' for none)")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time limit per level")
    parser.add_argument("--fuzz", type=int, default=400, help="hostile uploads")
    parser.add_argument("--soak-clients", type=int, default=16)
    parser.add_argument("--soak-seconds", type=float, default=0.0, help="soak run length (0: none)")
    parser.add_argument("--health-seconds", type=float, default=0.0, help="/health-under-decoding run (0: none)")
    parser.add_argument("--health-uploaders", type=int, default=2)
    parser.add_argument("--heavy-side", type=int, default=6300, help="side of the 16-bit PNG sent meanwhile")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other load on the machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    if args.image:
        image = Path(args.image).read_bytes()
    else:
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, "JPEG")
        image = buffer.getvalue()
    scratch = tempfile.TemporaryDirectory()
    model = args.model or str(untrained_model(Path(scratch.name)))
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "facecheck", "serve", "--model", model, "--port", str(port),
               "--backend", args.backend, "--workers", str(args.workers), "--queue", "64"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report: dict[str, Any] = {}
    try:
        if not wait_until_healthy(base, 120):
            print("service did not start")
            return 1
        for _ in range(5):  # warm-up
            httpx.post(f"{base}/v1/predict", files={"file": ("x.jpg", image, "image/jpeg")}, timeout=60)
        report["rss_after_warm_up_mb"] = rss_mb(server.pid)
        levels = [c for c in args.clients.split(",") if c.strip()]
        report["load"] = [
            run_load(base, image, int(c), args.requests, args.max_seconds, server_pid=server.pid) for c in levels
        ]
        if args.fuzz:
            report["fuzz"] = run_fuzz(base, fuzz_cases(args.fuzz, valid=image), image, server_pid=server.pid)
        if args.soak_seconds:
            bound = int(args.soak_clients * args.soak_seconds * 200)  # far above what one machine serves
            report["soak"] = run_load(
                base, image, args.soak_clients, bound, args.soak_seconds, server_pid=server.pid
            ) | {"seconds_asked": args.soak_seconds}
        if args.health_seconds:
            heavy = sixteen_bit_png(args.heavy_side)
            report["health_while_decoding"] = health_while_decoding(
                base, heavy, args.health_uploaders, args.health_seconds, server_pid=server.pid
            ) | {"heavy_side": args.heavy_side}
        report["rss_at_end_mb"] = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
        scratch.cleanup()
    report |= {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "note": args.note,
        "model": args.model or "untrained seed-cnn (default preset)",
        "backend": args.backend,
        "workers": args.workers,
        "image_bytes": len(image),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = markdown(report)
    (args.out / "service.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = [part for part in ("fuzz",) if part in report and not report[part]["ok"]]
    return 1 if failed else 0


def markdown(report: dict[str, Any]) -> list[str]:
    lines = [f"{report['date']}; {report['machine']['cores']} cores; {report['model']}, {report['backend']}, "
             f"{report['workers']} workers. {report['note']}".strip(), ""]  # fmt: skip
    runs = [(f"{level['clients']} clients", level) for level in report.get("load", [])]
    if "soak" in report:
        runs.append((f"soak: {report['soak']['clients']} clients, {report['soak']['seconds']:.0f} s", report["soak"]))
    if runs:
        lines += [
            "| run | requests | ok | throughput /s | p50 ms | p99 ms | errors | RSS before / peak / after MiB |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for name, run in runs:
            memory = f"{run.get('rss_before_mb')} / {run.get('rss_peak_mb')} / {run.get('rss_after_mb')}"
            lines.append(
                f"| {name} | {run['requests_sent']} | {run['ok']} | {run['throughput_per_s']:.1f} | "
                f"{run['p50_ms']:.1f} | {run['p99_ms']:.1f} | {run['errors'] or 'none'} | {memory} |"
            )
    if "fuzz" in report:
        fuzz = report["fuzz"]
        lines += ["", f"fuzz: {fuzz['cases']} hostile uploads; 5xx or non-JSON answers: "
                  f"{len(fuzz['server_errors']) or 'none'}; /health after: {fuzz['health_after']}; valid prediction "
                  f"after: {fuzz['valid_prediction_after']}; server RSS before / peak / after: "
                  f"{fuzz.get('rss_before_mb')} / {fuzz.get('rss_peak_mb')} / {fuzz.get('rss_after_mb')} MiB", "",
                  "| kind | answers (status: count) |", "|---|---|"]  # fmt: skip
        lines += [f"| {kind} | {counts} |" for kind, counts in fuzz["by_kind"].items()]
    if "health_while_decoding" in report:
        health = report["health_while_decoding"]
        lines += ["", f"/health while {health['uploaders']} clients send {health['heavy_side']}x{health['heavy_side']} "
                  f"16-bit PNGs ({health['heavy_bytes']} bytes; answers {health['uploads']}, upload p50 "
                  f"{health['upload_p50_ms']:.0f} ms): {health['health_checks']} checks, p50 "
                  f"{health['health_p50_ms']:.1f} ms, p99 {health['health_p99_ms']:.1f} ms, max "
                  f"{health['health_max_ms']:.1f} ms, errors {health['health_errors'] or 'none'}; server RSS before / "
                  f"peak / after: {health.get('rss_before_mb')} / {health.get('rss_peak_mb')} / "
                  f"{health.get('rss_after_mb')} MiB"]  # fmt: skip
    return lines


if __name__ == "__main__":
    sys.exit(main())
