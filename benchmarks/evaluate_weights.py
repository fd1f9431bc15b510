"""Score trained weights per split, noise model and level; print Markdown tables (for bundle/docs/README.md).

For each split (validation, test) and each noise model (gaussian, rician, speckle) at s = 0.05,
0.10, 0.15, 0.20, the slices of the demo datalist are corrupted deterministically (the same noisy
images as ``evaluate.json``: ``transforms.RandNoiseCorruptiond`` seeded by slice id) and scored
with ``nad_monai.denoising_metrics`` (PSNR, SSIM, Edge MSE; mean over slices). With ``--bm3d``,
the Rician-bias-corrected BM3D reference (``bm3d`` package, sigma given, needs the ``bench``
extra) is scored at Rician s = 0.10 on the same test slices, and the network beside it.

    python benchmarks/evaluate_weights.py --weights bundle/models/model.pt --bm3d --bm3d-every 4
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.bundle import ConfigParser

from nad_monai.baselines import rician_bias_correction
from nad_monai.datasets import slice_items
from nad_monai.evaluation import MODELS, SIGMAS, noisy_pairs, score_images


def score(pairs, denoise) -> dict[str, float]:
    """Mean whole-image PSNR, SSIM and Edge MSE over the pairs."""
    return {name: float(v.mean()) for name, v in score_images(pairs, denoise).items() if not name.startswith("head_")}


def bm3d_corrected(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    import bm3d  # optional: pip install -e ".[bench]" (non-commercial licence)

    out = bm3d.bm3d(noisy[0, 0].double().numpy(), sigma_psd=sigma)
    return rician_bias_correction(torch.as_tensor(out, dtype=noisy.dtype)[None, None], sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="bundle/models/model.pt", help="state dict of the bundle network")
    parser.add_argument("--config", default="bundle/configs/inference.json", help="config holding network_def")
    parser.add_argument("--datalist", default="data/datalist.json")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"])
    parser.add_argument("--bm3d", action="store_true", help="also score bias-corrected BM3D at Rician s=0.10 (test)")
    parser.add_argument("--bm3d-every", type=int, default=4, help="BM3D comparison on every n-th test slice")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = ConfigParser()
    config.read_config(args.config)
    net = config.get_parsed_content("network_def").eval()
    net.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True), strict=True)
    net = net.to(memory_format=torch.channels_last)

    def ours(x: torch.Tensor) -> torch.Tensor:
        return net(x.contiguous(memory_format=torch.channels_last))

    for split in args.splits:
        items = slice_items("nifti", args.datalist, split)
        print(f"\n{split} split: {len(items)} slices ({', '.join(sorted({i['id'].split('#')[0] for i in items}))})\n")
        print("| noise | s | noisy PSNR | PSNR (dB) | SSIM | Edge MSE |")
        print("|---|---|---|---|---|---|")
        for model in MODELS:
            for sigma in SIGMAS:
                pairs = noisy_pairs(items, model, sigma)
                noisy = score(pairs, lambda x: x)
                result = score(pairs, ours)
                print(f"| {model} | {sigma:.2f} | {noisy['psnr']:.2f} | {result['psnr']:.2f} | {result['ssim']:.3f} | {result['edge_mse']:.4f} |", flush=True)
    if args.bm3d:
        items = slice_items("nifti", args.datalist, "test")[:: args.bm3d_every]
        pairs = noisy_pairs(items, "rician", 0.10)
        start = time.perf_counter()
        reference = score(pairs, lambda x: bm3d_corrected(x, 0.10))
        seconds = (time.perf_counter() - start) / len(pairs)
        result = score(pairs, ours)
        print(f"\nRician s = 0.10, test, every {args.bm3d_every}th slice ({len(pairs)} slices):\n")
        print("| method | PSNR (dB) | SSIM | Edge MSE |")
        print("|---|---|---|---|")
        print(f"| BM3D + Rician bias correction ({seconds:.1f} s/slice) | {reference['psnr']:.2f} | {reference['ssim']:.3f} | {reference['edge_mse']:.4f} |")
        print(f"| unrolled Perona-Malik (these weights) | {result['psnr']:.2f} | {result['ssim']:.3f} | {result['edge_mse']:.4f} |")


if __name__ == "__main__":
    main()
