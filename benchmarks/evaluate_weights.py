"""Score trained weights per split, noise model and level; print Markdown tables (for bundle/docs/README.md).

For each split (validation, test) and each noise model (gaussian, rician, speckle) at s = 0.05,
0.10, 0.15, 0.20, the slices of the demo datalist are corrupted deterministically (the same noisy
images as ``evaluate.json``: ``transforms.RandNoiseCorruptiond`` seeded by slice id) and scored
with ``nad_monai.denoising_metrics`` (PSNR, SSIM, Edge MSE; mean over slices). With ``--bm3d``,
the Rician-bias-corrected BM3D reference (``bm3d`` package, sigma given, needs the ``bench``
extra) is scored at Rician s = 0.10 on every n-th slice of each split, and the network beside it,
over the whole image and inside the head mask, and so are blends of the two outputs (what the
network knows that BM3D does not).

    python benchmarks/evaluate_weights.py --weights bundle/models/model.pt --bm3d --bm3d-every 4
    python benchmarks/evaluate_weights.py --config bundle/configs/train.json benchmarks/results/training/ours/config.json \
        --weights benchmarks/results/training/ours/models/model.pt --splits validation test --bm3d --bm3d-every 2   # a benchmark row
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.bundle import ConfigParser

from nad_monai.baselines import rician_bias_correction
from nad_monai.datasets import slice_items
from nad_monai.evaluation import MODELS, SIGMAS, noisy_pairs, score_images


BLEND_WEIGHTS = (0.2, 0.5)
"""Weights of the network in the blends of its output with BM3D's that ``--bm3d`` also scores."""


def score(pairs, denoise) -> dict[str, float]:
    """Mean PSNR, SSIM and Edge MSE over the pairs, whole image and (``head_``) inside the head mask."""
    return {name: float(v.mean()) for name, v in score_images(pairs, denoise).items()}


def bm3d_corrected(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    import bm3d  # optional: pip install -e ".[bench]" (non-commercial licence)

    out = bm3d.bm3d(noisy[0, 0].double().numpy(), sigma_psd=sigma)
    return rician_bias_correction(torch.as_tensor(out, dtype=noisy.dtype)[None, None], sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="bundle/models/model.pt", help="state dict of the bundle network")
    parser.add_argument("--config", nargs="+", default=["bundle/configs/inference.json"], help="config file(s) holding network_def, merged in order")
    parser.add_argument("--datalist", default="data/datalist.json")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"])
    parser.add_argument("--bm3d", action="store_true", help="also score bias-corrected BM3D at Rician s=0.10 on each split")
    parser.add_argument("--bm3d-every", type=int, default=4, help="BM3D comparison on every n-th slice")
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
    for split in args.splits if args.bm3d else []:
        items = slice_items("nifti", args.datalist, split)[:: args.bm3d_every]
        pairs = noisy_pairs(items, "rician", 0.10)
        start = time.perf_counter()
        reference = {id(x): bm3d_corrected(x, 0.10) for x, _, _ in pairs}  # keyed by the noisy tensor score() passes
        seconds = (time.perf_counter() - start) / len(pairs)
        with torch.inference_mode():
            network = {id(x): ours(x) for x, _, _ in pairs}
        rows = [(f"BM3D + Rician bias correction ({seconds:.1f} s/slice)", 0.0), ("unrolled Perona-Malik (these weights)", 1.0)]
        rows += [(f"{w} x these weights + {1 - w:.1f} x BM3D (how much the network adds to BM3D)", w) for w in BLEND_WEIGHTS]
        print(f"\nRician s = 0.10, {split}, every {args.bm3d_every}th slice ({len(pairs)} slices):\n")
        print("| method | PSNR (dB) | SSIM | Edge MSE | head PSNR (dB) |")
        print("|---|---|---|---|---|")
        for name, w in rows:
            r = score(pairs, lambda x: w * network[id(x)] + (1 - w) * reference[id(x)])
            print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['edge_mse']:.4f} | {r['head_psnr']:.2f} |")


if __name__ == "__main__":
    main()
