"""Fetching public real-vs-fake face sets (needs internet and a Kaggle account).

The sets live on Kaggle; the official ``kaggle`` command-line client fetches
them with the user's API token (``~/.kaggle/kaggle.json``). Nothing is
downloaded without being asked; licences are the publishers' (see each page).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from facecheck.errors import DataError

PUBLIC_SETS = {
    "140k-real-and-fake-faces": "xhlulu/140k-real-and-fake-faces",
    "real-and-fake-face-detection": "ciplab/real-and-fake-face-detection",
    "deepfake-and-real-images": "manjilkarki/deepfake-and-real-images",
}


def download(name: str, out_dir: Path) -> Path:
    if name not in PUBLIC_SETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(PUBLIC_SETS))}")
    client = shutil.which("kaggle")
    if client is None:
        raise DataError(
            "downloading needs the Kaggle client: pip install kaggle, then put your API token in "
            "~/.kaggle/kaggle.json (https://www.kaggle.com/settings)"
        )
    target = Path(out_dir).expanduser() / name
    target.mkdir(parents=True, exist_ok=True)
    command = [client, "datasets", "download", "-d", PUBLIC_SETS[name], "-p", str(target), "--unzip"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=24 * 3600)
    except subprocess.TimeoutExpired:
        raise DataError(f"download of {name} timed out") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise DataError(f"download of {name} failed (offline, or no Kaggle token?): {last[:300]}")
    return target
