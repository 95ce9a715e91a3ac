"""Service benchmark: latency and throughput at 1, 4 and 16 concurrent clients, then a fuzz run.

    python benchmarks/service.py --model runs/mnv2 [--backend onnx] [--requests 200] [--out benchmarks/results]

Starts `facecheck serve` on 127.0.0.1 (a free port), sends a bounded number of
requests (and never for longer than --max-seconds per level), then fuzzes it
and checks that it still answers /health and a valid prediction. Loopback only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from facecheck.serving.loadtest import free_loopback_port, fuzz_cases, run_fuzz, run_load, wait_until_healthy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", choices=("torch", "onnx", "openvino"), default="torch")
    parser.add_argument("--image", help="image to send (default: a 256x256 JPEG of the first test image or noise)")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time limit per level")
    parser.add_argument("--fuzz", type=int, default=400, help="fuzz cases")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    if args.image:
        image = Path(args.image).read_bytes()
    else:
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, "JPEG")
        image = buffer.getvalue()
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "facecheck", "serve", "--model", args.model, "--port", str(port),
               "--backend", args.backend, "--workers", str(args.workers), "--queue", "64"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_until_healthy(base, 120):
            print("service did not start")
            return 1
        for _ in range(5):  # warm-up
            httpx.post(f"{base}/v1/predict", files={"file": ("x.jpg", image, "image/jpeg")}, timeout=60)
        levels = [run_load(base, image, int(c), args.requests, args.max_seconds) for c in args.clients.split(",")]
        fuzz = run_fuzz(base, fuzz_cases(args.fuzz, valid=image), image)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "model": args.model,
        "backend": args.backend,
        "workers": args.workers,
        "image_bytes": len(image),
        "load": levels,
        "fuzz": fuzz,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "| clients | requests | ok | throughput /s | p50 ms | p95 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for level in levels:
        lines.append(
            f"| {level['clients']} | {level['requests_sent']} | {level['ok']} | {level['throughput_per_s']:.1f} | "
            f"{level['p50_ms']:.1f} | {level['p95_ms']:.1f} | {level['p99_ms']:.1f} | {level['errors'] or 'none'} |"
        )
    lines += ["", f"fuzz: {fuzz['cases']} cases, by kind and status {fuzz['by_kind']}; "
              f"server errors {fuzz['server_errors'] or 'none'}; /health after: {fuzz['health_after']}; "
              f"valid prediction after: {fuzz['valid_prediction_after']}"]  # fmt: skip
    (args.out / "service.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if fuzz["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
