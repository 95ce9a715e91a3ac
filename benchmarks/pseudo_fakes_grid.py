"""Picture of pseudo-fakes: real images beside their self-blended and re-synthesised versions and the blend mask.

    python benchmarks/pseudo_fakes_grid.py --out /tmp/pseudo_fakes.png
    python benchmarks/pseudo_fakes_grid.py --data path/to/real --count 6 --seed 3 --out grid.png

One row per image: the real image, the SBI pseudo-fake, its blend weight (white = the altered
copy), the re-synthesised image, and the 8x amplified absolute differences of both fakes to the
real image. The images are taken as face crops (the default face box). Also prints the time per
image of each kind and the PSNR of the re-synthesised images to the real ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from facecheck.data.pseudo_fakes import resynthesize, self_blend_with_mask

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ffhq-stylegan" / "real"
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of real face images")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--count", type=int, default=6, help="number of images (rows)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no image folder at {args.data}; pass --data with a folder of real face images", file=sys.stderr)
        return 2
    paths = sorted(p for p in args.data.iterdir() if p.suffix.lower() in EXTENSIONS)[: args.count]
    if not paths:
        print(f"no images in {args.data}", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    columns = ["real", "SBI", "SBI blend weight", "re-synthesis", "|SBI - real| x8", "|resynth - real| x8"]
    figure, axes = plt.subplots(len(paths), len(columns), figsize=(2.2 * len(columns), 2.2 * len(paths)))
    axes = np.atleast_2d(axes)
    torch.set_num_threads(1)  # as in a DataLoader worker, and as PseudoFakeMaker runs them
    generator = torch.Generator().manual_seed(args.seed)
    sbi_times, resynth_times, psnrs = [], [], []
    for row, path in enumerate(paths):
        with Image.open(path) as opened:
            image = torch.from_numpy(np.array(opened.convert("RGB"))).permute(2, 0, 1).contiguous()
        start = time.perf_counter()
        sbi, weight = self_blend_with_mask(image, generator)
        sbi_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        resynth = resynthesize(image, generator)
        resynth_times.append(time.perf_counter() - start)
        psnrs.append(psnr(resynth, image))
        panels = [
            image.permute(1, 2, 0).numpy(),
            sbi.permute(1, 2, 0).numpy(),
            weight.numpy(),
            resynth.permute(1, 2, 0).numpy(),
            np.clip((sbi.float() - image.float()).abs().permute(1, 2, 0).numpy() * 8, 0, 255).astype(np.uint8),
            np.clip((resynth.float() - image.float()).abs().permute(1, 2, 0).numpy() * 8, 0, 255).astype(np.uint8),
        ]
        for column, panel in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.ndim == 2 else None)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column], fontsize=9)
        axes[row, 3].set_xlabel(f"PSNR {psnrs[-1]:.1f} dB", fontsize=8)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    print(
        f"per image: sbi {1000 * np.median(sbi_times):.1f} ms, resynth {1000 * np.median(resynth_times):.1f} ms "
        f"(median, first call included); resynth PSNR {min(psnrs):.1f}-{max(psnrs):.1f} dB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
