"""Benchmark: self-supervised adaptation of a trained row to the noisy test slices (Recorrupted-to-Recorrupted).

A tried change for the Rician goal (README, "What we tried"): before scoring, the trained network is
fine-tuned on the noisy test slices themselves, never on their clean references (a transductive,
per-study adaptation a user could run on their own scans). Recorrupted-to-Recorrupted (Pang et al.,
CVPR 2021): from a noisy image ``y`` with known noise level ``s`` and ``z ~ N(0, s^2)``,

    y1 = y + alpha z,   y2 = y - z / alpha,   loss = MSE(net(y1), y2)

For additive Gaussian noise the noise of ``y1`` and ``y2`` is uncorrelated, so the loss is the
supervised loss plus a constant; for Rician magnitudes it holds where the SNR is high and the network
learns the biased mean, so its outputs are bias-corrected like the classical rows'. Each iteration is
one Adam step on a batch of random crops. The network gets its input alone, as in the benchmark (rows
with a noise-level input estimate it); the known ``s`` (as the classical rows get it) sets only the
recorruption and the bias correction. It adapts on the scored slices, or on every n-th slice of the
test volume (``--adapt-every 1``: the whole study, as a user would). A 2.5D row (``context_slices``)
adapts on the stacks of every slice of the test volume and learns its middle slice; with
``--all-planes`` a row is scored as ``nad-denoise --all-planes`` runs it (the mean over the volume's
three planes) and adapts on the slices, or stacks, of all three planes. Two measurements on top:
``--ensemble`` also scores the mean output over the 8 flips and quarter turns of each slice, and
``--bm3d-pilot`` gives a row with a pilot estimate the ``bm3d`` package's in its place, to see
whether the network can improve on BM3D when handed its estimate. Prints PSNR, SSIM and Edge MSE
(whole image and head mask) before and after, per setting:

    python benchmarks/test_time_adaptation.py --row ours --iterations 0 100 300 600 --lr 1e-4 --out bench/tta.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from benchmark_report import write_text_atomic
from compare_methods import ROOT, network_outputs, trained_rows

from nad_monai.baselines import rician_bias_correction
from nad_monai.datasets import neighbour_indices, slice_items
from nad_monai.evaluation import noisy_pairs, score_images, volumes

METRICS = ("psnr", "head_psnr", "ssim", "head_ssim", "edge_mse", "head_edge_mse")


def recorrupted_pair(y: torch.Tensor, sigma: float, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ``y + alpha z`` and target ``y - z / alpha`` of Recorrupted-to-Recorrupted, ``z ~ N(0, sigma^2)``, shapes of ``y``."""
    z = torch.randn(y.shape, generator=generator) * sigma
    return y + alpha * z, y - z / alpha


def random_crops(images: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``size`` x ``size`` crops ``(count, C, size, size)`` of images ``(N, C, H, W)``."""
    n, _, h, w = images.shape
    index = torch.randint(n, (count,), generator=generator)
    top = torch.randint(h - size + 1, (count,), generator=generator)
    left = torch.randint(w - size + 1, (count,), generator=generator)
    return torch.stack([images[i, :, t : t + size, s : s + size] for i, t, s in zip(index.tolist(), top.tolist(), left.tolist())])


def plane_stacks(slices: torch.Tensor, context: int, axes: Sequence[int]) -> list[torch.Tensor]:
    """The stacks ``(D, 1 + 2 context, H, W)`` of every slice of a volume cut across each of ``axes`` (0, 1, 2 of
    ``X, Y, Z``), given its slices ``(Z, 1, X, Y)`` (``nad_monai.evaluation.volumes``): the slice and its ``context``
    neighbours on each side, ends repeated (``neighbour_indices``), as ``NeighbourSliceInferer`` hands them to a
    2.5D network; ``context`` 0 gives the slices ``(D, 1, H, W)`` themselves."""
    volume = slices[:, 0].permute(1, 2, 0)
    stacks = []
    for axis in axes:
        cut = torch.movedim(volume, axis, 0)
        stacks.append(torch.stack([cut[neighbour_indices(k, len(cut), context)] for k in range(len(cut))]))
    return stacks


def adapt(
    net: torch.nn.Module,
    noisy: torch.Tensor | Sequence[torch.Tensor],
    sigma: float,
    iterations: int,
    lr: float,
    alpha: float = 0.5,
    crop: int = 64,
    batch: int = 8,
    seed: int = 0,
) -> torch.nn.Module:
    """A copy of ``net`` fine-tuned by Recorrupted-to-Recorrupted on ``noisy`` images ``(N, C, H, W)`` of noise level ``sigma``.

    ``C`` is 1, or ``1 + 2 c`` for the stacks of a 2.5D network, whose target is the middle slice; ``noisy`` may
    also be a list of such tensors (the stacks of each plane, ``plane_stacks``), each batch drawn from one of them
    at random. Adam at ``lr``, gradients clipped to norm 1, ``iterations`` steps of ``batch`` random ``crop``-pixel crops.
    """
    planes = [noisy] if isinstance(noisy, torch.Tensor) else list(noisy)
    net = copy.deepcopy(net).train()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(iterations):
        images = planes[int(torch.randint(len(planes), (1,), generator=generator))] if len(planes) > 1 else planes[0]
        y1, y2 = recorrupted_pair(random_crops(images, crop, batch, generator), sigma, alpha, generator)
        middle = y2.size(1) // 2
        loss = torch.nn.functional.mse_loss(net(y1), y2[:, middle : middle + 1])
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimiser.step()
    return net.eval()


def dihedral_mean(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Mean of ``net`` over the 8 flips and quarter turns of ``x`` ``(N, 1, H, W)``, each turned back (a geometric self-ensemble)."""
    outputs = []
    for flip in (False, True):
        flipped = x.flip(-1) if flip else x
        for turns in range(4):
            u = torch.rot90(net(torch.rot90(flipped, turns, (-2, -1))), -turns, (-2, -1))
            outputs.append(u.flip(-1) if flip else u)
    return torch.stack(outputs).mean(0)


class BM3DPilot(torch.nn.Module):
    """The ``bm3d`` package's estimate (both stages) as a network's pilot, in place of its own: ``(N, 1, H, W)`` images and
    the network's ``(N,)`` noise estimates in, ``(N, 1, H, W)`` estimates out; nothing learned, no gradient."""

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        import bm3d

        images = x.detach().cpu().numpy()[:, 0]
        return torch.stack([torch.as_tensor(bm3d.bm3d(img, sigma_psd=float(s)), dtype=x.dtype) for img, s in zip(images, sigma.tolist())])[:, None].to(x)


def summary(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {m: float(np.mean(values[m])) for m in METRICS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", default="ours", help="a trained row in RESULTS/training/ (default: ours)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="the benchmark's output folder")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.10], help="Rician noise levels (default: 0.10)")
    parser.add_argument("--iterations", type=int, nargs="+", default=[0, 300], help="adaptation steps to compare (0: the row as trained)")
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-4], help="Adam learning rates to compare")
    parser.add_argument("--alpha", type=float, default=0.5, help="recorruption strength")
    parser.add_argument("--datalist", default=str(ROOT / "data" / "datalist.json"))
    parser.add_argument("--test-every", type=int, default=2, help="score every n-th test slice (the committed run's protocol: 2)")
    parser.add_argument("--adapt-every", type=int, help="adapt on every n-th test slice (default: the scored ones; 1: the whole volume); 2.5D rows and --all-planes adapt on the whole volume")
    parser.add_argument("--bm3d-pilot", action="store_true", help="replace the row's pilot estimate by the bm3d package's (a row with a pilot)")
    parser.add_argument("--ensemble", action="store_true", help="also score the mean over the 8 flips and quarter turns of each slice (8 times the scoring)")
    parser.add_argument("--all-planes", action="store_true", help="score the mean over the test volume's three planes and adapt on all three (nad-denoise --all-planes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="JSON file for the scores (written via a temporary file)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    trained = trained_rows(parser, args.results, [args.row])[args.row]
    if args.bm3d_pilot:
        if getattr(trained, "pilot", None) is None:
            parser.error(f"{args.results / 'training' / args.row}: --bm3d-pilot needs a row whose network has a pilot estimate")
        trained.pilot = BM3DPilot()
    if args.ensemble and args.all_planes:
        parser.error("--ensemble scores single slices; it does not combine with --all-planes")
    context = getattr(trained, "context_slices", 0)
    volume = slice_items("nifti", args.datalist, "test")
    test, seen = volume[:: args.test_every], volume[:: args.adapt_every or args.test_every]
    records = []
    for sigma in args.sigmas:
        pairs = noisy_pairs(test, "rician", sigma)
        # the noise of a slice depends on its id alone, so a slice of the whole volume is the very slice of pairs
        whole = volumes(noisy_pairs(slice_items("nifti", args.datalist, "test", min_foreground=0), "rician", sigma)) if context or args.all_planes else {}
        if whole:  # the whole test volume: stacks (or slices) of every plane scored
            noisy = [s for slices, _, _ in whole.values() for s in plane_stacks(slices, context, (0, 1, 2) if args.all_planes else (2,))]
        else:
            noisy = [torch.cat([p[0] for p in noisy_pairs(seen, "rician", sigma)])]
        runs = [(0, 0.0)] if 0 in args.iterations else []
        runs += [(it, lr) for it in args.iterations if it > 0 for lr in args.lr]
        for iterations, lr in runs:
            start = time.perf_counter()
            net = adapt(trained, noisy, sigma, iterations, lr, args.alpha) if iterations else trained
            seconds = time.perf_counter() - start
            for ensemble in (False, True) if args.ensemble else (False,):
                # one pass, scored both ways
                outputs = network_outputs(net, pairs, whole, args.all_planes, (lambda x: dihedral_mean(net, x)) if ensemble else None)
                for corrected in (False, True):
                    scores = summary(score_images(outputs, lambda u: rician_bias_correction(u, sigma) if corrected else u))
                    record = {"row": args.row, "bm3d_pilot": args.bm3d_pilot, "all_planes": args.all_planes, "sigma": sigma, "iterations": iterations, "lr": lr, "alpha": args.alpha}
                    records.append({**record, "ensemble": ensemble, "corrected": corrected, "adaptation_seconds": round(seconds, 1), **scores})
                    print(
                        f"rician {sigma:.2f} {args.row}{' with the BM3D pilot' if args.bm3d_pilot else ''}{', all planes' if args.all_planes else ''}: "
                        f"{iterations:4d} iterations, lr {lr:.0e}, {'8-fold ensemble, ' if ensemble else ''}"
                        f"{'corrected' if corrected else 'uncorrected'}: "
                        f"PSNR {scores['psnr']:.2f} / head {scores['head_psnr']:.2f} dB, SSIM {scores['ssim']:.4f}, "
                        f"Edge MSE {scores['edge_mse']:.4f} / head {scores['head_edge_mse']:.4f} ({seconds:.0f} s)",
                        flush=True,
                    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps({"test_slices": len(test), "adaptation_slices": sum(len(n) for n in noisy), "records": records}, indent=1))


if __name__ == "__main__":
    main()
