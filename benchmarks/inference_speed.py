"""End-to-end inference time and peak memory, next to the per-slice cost of the classical denoisers.

Each case runs ``nad_monai.inference.denoise_file`` (read NIfTI, normalise, SliceInferer over
axial slices, restore units, write NIfTI) in a fresh subprocess, which reports its own wall time
and peak resident memory (``VmHWM``). Cases: Colin27 (181x217x181, Rician 0.10 added) and a
512x512x300 int16 volume (Colin27 resampled, noise added), on the CPU with ``--threads`` threads
and, when a GPU is present, on the GPU (AMP) too. Then the network's time per slice for several
slice batch sizes, and skimage TV, NLM and BM3D (if the ``bm3d`` extra is installed) per slice.

    python benchmarks/inference_speed.py              # everything, Markdown tables
    python benchmarks/inference_speed.py --skip-large # without the 512x512x300 case
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "bundle" / "models" / "model.pt"


def make_inputs(folder: Path, large: bool) -> dict[str, Path]:
    """Noisy test volumes as NIfTI files: Colin27 as shipped (float32) and, if ``large``, 512x512x300 int16."""
    from scipy.ndimage import zoom

    from transforms import RandRicianCorruption

    img = nib.load(ROOT / "data" / "colin27_t1.nii.gz")
    clean = np.asarray(img.get_fdata(), dtype=np.float32)
    noise = RandRicianCorruption(sigma=0.1)
    noise.set_random_state(0)
    paths = {"colin27 181x217x181": folder / "colin27_noisy.nii.gz"}
    nib.save(nib.Nifti1Image(np.asarray(noise(clean[None]))[0], img.affine), paths["colin27 181x217x181"])
    if large:
        big = zoom(clean, [512 / 181, 512 / 217, 300 / 181], order=1)
        big = np.asarray(noise(big[None]))[0]
        paths["512x512x300 int16"] = folder / "large_noisy.nii"  # uncompressed: time the denoiser, not gzip
        nib.save(nib.Nifti1Image(np.rint(big * 2000).astype(np.int16), np.diag([0.45, 0.45, 0.6, 1.0])), paths["512x512x300 int16"])
    return paths


def run_case(path: Path, out: Path, device: str, threads: int, batch: int) -> dict:
    """One end-to-end denoise_file in this process; returns seconds and peak RSS."""
    torch.set_num_threads(threads)
    from nad_monai.inference import Denoiser, bundle_network, denoise_file, load_weights

    start = time.perf_counter()
    denoiser = Denoiser(load_weights(bundle_network(), WEIGHTS, device), device=device, batch_size=batch)
    result = denoise_file(path, out, denoiser, "benchmark", overwrite=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "slices": result.slices, "peak_rss_gib": peak_rss_gib()}


def peak_rss_gib() -> float:
    """This process's peak resident memory (``VmHWM``: unlike ``ru_maxrss``, not inherited through fork/exec)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 2**20


def in_subprocess(path: Path, out: Path, device: str, threads: int, batch: int) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, %r); from inference_speed import run_case; "
        "print(json.dumps(run_case(*sys.argv[1:3], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))"
    ) % str(Path(__file__).parent)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), str(out), device, str(threads), str(batch)], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_seconds(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def batch_sweep(volume: np.ndarray, device: str, batches: list[int]) -> dict[int, float]:
    """Network-only seconds per slice for each slice batch size, over 16 axial slices."""
    from nad_monai.inference import Denoiser, bundle_network, load_weights

    net = load_weights(bundle_network(), WEIGHTS, device)
    image = torch.from_numpy(volume[None, :, :, 80:96].copy())
    out = {}
    for b in batches:
        denoiser = Denoiser(net, device=device, batch_size=b)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        out[b] = median_seconds(lambda: (denoiser(image), sync())) / image.shape[-1]
    return out


def classical_per_slice(slice_: np.ndarray) -> dict[str, float]:
    """Seconds per slice of skimage TV (Chambolle), NLM (fast) and BM3D, on ``slice_``."""
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    from nad_monai.networks import estimate_noise_sigma

    sigma = float(estimate_noise_sigma(torch.from_numpy(slice_)[None, None].float())[0])
    methods = {
        "skimage TV (Chambolle, weight 0.08)": lambda: denoise_tv_chambolle(slice_, weight=0.08),
        "skimage NLM (fast, 5x5 patches, 13x13 search)": lambda: denoise_nl_means(slice_, patch_size=5, patch_distance=6, h=0.8 * sigma, fast_mode=True),
    }
    try:
        import bm3d

        methods["BM3D (bm3d 4.0.3, all stages)"] = lambda: bm3d.bm3d(slice_, sigma_psd=sigma)
    except ImportError:
        pass
    return {name: median_seconds(fn, repeats=1) for name, fn in methods.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="slices per network call for the end-to-end cases")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp), large=not args.skip_large)
        print(f"## End to end: read, denoise slice by slice (batch {args.batch}), write ({args.threads} CPU threads)\n")
        print("| volume | device | seconds | slices/s | peak RSS (GiB) |\n|---|---|---|---|---|")
        for name, path in inputs.items():
            for device in devices:
                r = in_subprocess(path, Path(tmp) / "out", device, args.threads, args.batch)
                print(f"| {name} | {device} | {r['seconds']:.1f} | {r['slices'] / r['seconds']:.1f} | {r['peak_rss_gib']:.2f} |", flush=True)
        colin = np.asarray(nib.load(inputs["colin27 181x217x181"]).dataobj, dtype=np.float32)
        print("\n## Network time per 181x217 slice by slice batch size\n")
        print("| device | " + " | ".join(f"batch {b}" for b in (1, 2, 4, 8, 16)) + " |\n|---|---|---|---|---|---|")
        for device in devices:
            sweep = batch_sweep(colin, device, [1, 2, 4, 8, 16])
            print(f"| {device} | " + " | ".join(f"{1000 * s:.1f} ms" for s in sweep.values()) + " |", flush=True)
        print("\n## Classical denoisers, seconds per slice (CPU)\n")
        slices = {"181x217": colin[:, :, 90] / colin.max()}
        if "512x512x300 int16" in inputs:
            big = np.asarray(nib.load(inputs["512x512x300 int16"]).dataobj[:, :, 150], dtype=np.float32)
            slices["512x512"] = big / big.max()
        rows = {size: classical_per_slice(s) for size, s in slices.items()}
        print("| method | " + " | ".join(rows) + " |\n|---|" + "---|" * len(rows))
        for method in next(iter(rows.values())):
            print(f"| {method} | " + " | ".join(f"{rows[size][method]:.2f}" for size in rows) + " |")


if __name__ == "__main__":
    main()
