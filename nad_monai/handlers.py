"""Ignite handlers for the bundle workflows: crash-safe checkpoints, gradient clipping, the baseline comparison, figures."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ignite.engine import Engine, Events  # noqa: E402
from ignite.handlers import Checkpoint, DiskSaver  # noqa: E402
from monai.engines import IterationEvents  # noqa: E402

from .baselines import tune  # noqa: E402
from .metrics import denoising_metrics  # noqa: E402

logger = logging.getLogger(__name__)


def middle_slice(x: torch.Tensor) -> torch.Tensor:
    """The slice ``(N, 1, H, W)`` that a 2.5D network's input stack ``(N, 1 + 2 c, H, W)`` is centred on (``x`` itself when c = 0)."""
    middle = x.size(1) // 2
    return x[:, middle : middle + 1]


class _FixedNameDiskSaver(DiskSaver):
    """Ignite's atomic ``DiskSaver`` that always writes ``filename``: each save replaces it in one rename."""

    def __init__(self, dirname: str | os.PathLike, filename: str):
        super().__init__(dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint, filename, metadata=None) -> None:
        super().__call__(checkpoint, self.filename, metadata)

    def remove(self, filename: str) -> None:
        """Nothing to delete: the next save replaces the file (deleting first would leave none if killed)."""


class CrashSafeCheckpointSaver:
    """Save training checkpoints, or the best model, so that a run killed at any moment leaves a loadable file.

    MONAI's ``CheckpointSaver`` writes in place and deletes the old file before writing the new one;
    a run killed mid-save leaves a truncated checkpoint that ``--resume`` then fails on. Here every
    file is written to a temporary file in ``save_dir`` and renamed into place (ignite's atomic
    ``DiskSaver``), at the end of every epoch of the engine it is attached to.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects with ``state_dict`` to save (DDP/DataParallel networks are unwrapped).
        key_metric_filename: ``None``: resumable checkpoints ``<file_prefix>_epoch=<n>.pt`` after
            every epoch, the newest ``n_saved`` kept (at least 2: ignite deletes the oldest before
            writing the newest). A name (``"model.pt"``): the weights each time the engine's key
            metric improves, always under that name.
        file_prefix: name prefix of the resumable checkpoints.
        n_saved: how many resumable checkpoints to keep.

    ``state_dict``/``load_state_dict`` hold the best score so far, so a resumed run only replaces
    the best model with a better one.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: dict,
        key_metric_filename: str | None = None,
        file_prefix: str = "checkpoint",
        n_saved: int = 2,
    ):
        if key_metric_filename is None:
            if n_saved < 2:
                raise ValueError(f"n_saved={n_saved}: keep at least 2 checkpoints so one survives a kill mid-save")
            self._checkpoint = Checkpoint(
                save_dict,
                DiskSaver(save_dir, require_empty=False, atomic=True),
                filename_prefix=file_prefix,
                filename_pattern="{filename_prefix}_epoch={global_step}.{ext}",
                global_step_transform=lambda engine, event: engine.state.epoch,
                n_saved=n_saved,
            )
        else:
            self._checkpoint = Checkpoint(
                save_dict,
                _FixedNameDiskSaver(save_dir, key_metric_filename),
                score_function=lambda engine: engine.state.metrics[engine.state.key_metric_name],
                n_saved=1,
            )

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._checkpoint)

    def state_dict(self) -> dict:
        return self._checkpoint.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self._checkpoint.load_state_dict(state_dict)


class GradientClipping:
    """Clip the global gradient norm of the trainer's network to ``max_norm`` before every optimizer step.

    Attached to MONAI's ``IterationEvents.BACKWARD_COMPLETED`` (fired between ``backward`` and
    ``step``); with AMP it unscales the gradients first, so the norm is in true units.
    """

    def __init__(self, max_norm: float = 1.0):
        self.max_norm = max_norm

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if getattr(engine, "scaler", None) is not None:
            engine.scaler.unscale_(engine.optimizer)
        torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm)


def _psnr(pred: torch.Tensor, clean: torch.Tensor) -> float:
    return denoising_metrics()["psnr"](pred.clamp(0, 1), clean).mean().item()


class BaselineComparison:
    """At the end of training, print how the best checkpoint compares with tuned classical PM and TV.

    Runs over the validator's data (deterministic noise, so the same images for every method):
    the network with the weights of ``model_file`` (the best validation PSNR) and Perona-Malik and
    TV, each tuned on that same data by grid search (which favours the baselines). Rician items
    are bias-corrected for the baselines. The result goes to the log (the bundle's logging.conf
    prints it) as the run's final lines.

    Args:
        validator: the MONAI evaluator whose ``data_loader`` holds the validation batches, whose
            items carry ``noise_model`` and ``noise_sigma``.
        model_file: checkpoint of the best model (state dict); the current weights if missing.
    """

    def __init__(self, validator: Engine, model_file: str | os.PathLike):
        self.validator = validator
        self.model_file = Path(model_file)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        net, device = self.validator.network, self.validator.state.device
        net = getattr(net, "module", net)  # unwrap DistributedDataParallel
        if self.model_file.is_file():
            net.load_state_dict(torch.load(self.model_file, map_location=device, weights_only=True))
        net.eval()
        noisy, clean, sigmas, ours = [], [], [], []
        with torch.no_grad():
            for batch in self.validator.data_loader:
                for i in range(len(batch["image"])):  # one slice at a time: sizes and noise models differ
                    x, y = batch["image"][i : i + 1], batch["label"][i : i + 1]
                    noisy.append(middle_slice(x))  # the baselines get the slice a 2.5D stack is centred on
                    clean.append(y)
                    rician = batch["noise_model"][i] == "rician"
                    sigmas.append(float(batch["noise_sigma"][i]) if rician else None)
                    ours.append(_psnr(net(x.to(device)).cpu(), y))
        results = {"unrolled Perona-Malik (ours)": (float(np.mean(ours)), "best checkpoint")}
        for method, label in (("perona_malik", "classical Perona-Malik"), ("tv", "TV (Chambolle)")):
            params, value = tune(method, noisy, clean, _psnr, correct=sigmas)
            results[label] = (value, ", ".join(f"{k}={v}" for k, v in params.items()))
        lines = [f"validation PSNR on {len(noisy)} slices (dB):"]
        lines += [f"  {name:32s} {value:6.2f}  ({how})" for name, (value, how) in results.items()]
        best_baseline = max(v for name, (v, _) in results.items() if "ours" not in name)
        margin = results["unrolled Perona-Malik (ours)"][0] - best_baseline
        lines.append(f"  ours {'beats' if margin > 0 else 'does NOT beat'} the best tuned baseline by {margin:+.2f} dB")
        for line in lines:
            logger.info(line)


class DenoisingFigures:
    """Save a PNG for ``n_images`` evaluation slices spread evenly over the run: clean, noisy, denoised, gates, error.

    The gate map is the mean gate over directions and steps (1 = free diffusion, 0 = edge kept),
    from ``network.inspect(image)``; the error map is ``|denoised - clean|``.
    Batches must carry ``id``, ``noise_model`` and ``noise_sigma`` (see ``transforms.RandNoiseCorruptiond``).

    Args:
        output_dir: folder for ``<id>.png`` files (created if needed).
        n_images: how many slices to draw (the first slice of evenly spaced batches).
    """

    def __init__(self, output_dir: str | os.PathLike, n_images: int = 4):
        self.output_dir = Path(output_dir)
        self.n_images = n_images

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def chosen(self, epoch_length: int) -> set[int]:
        """Iterations (1-based) to draw: ``n_images`` evenly spaced inside the epoch."""
        return {int(round(v)) for v in np.linspace(1, epoch_length, self.n_images + 2)[1:-1]}

    def __call__(self, engine: Engine) -> None:
        if engine.state.iteration not in self.chosen(engine.state.epoch_length):
            return
        batch = engine.state.batch  # MONAI evaluators decollate: a list of per-item dicts
        item = batch[0] if isinstance(batch, list) else {k: v[0] for k, v in batch.items()}
        device = engine.state.device
        x, y = item["image"][None].to(device), item["label"][None].to(device)
        net = getattr(engine.network, "module", engine.network)
        with torch.no_grad():
            pred, details = net.inspect(x)
        pred, x = pred.clamp(0, 1), middle_slice(x)
        psnr = denoising_metrics()["psnr"]
        panels = {
            "clean": y[0, 0],
            f"noisy ({item['noise_model']}, s={float(item['noise_sigma']):.2f}), {psnr(x, y).item():.1f} dB": x[0, 0],
            f"denoised, {psnr(pred, y).item():.1f} dB": pred[0, 0],
            "mean gate (1 = diffuse)": torch.stack(details["gates"]).mean(dim=(0, 2))[0],
            "|denoised - clean|": (pred[0, 0] - y[0, 0]).abs(),
        }
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
        for ax, (title, img) in zip(axes, panels.items()):
            cmap, vmax = ("magma", 0.2) if title.startswith("|") else ("viridis", 1.0) if "gate" in title else ("gray", 1.0)
            im = ax.imshow(np.rot90(img.float().cpu().numpy()), cmap=cmap, vmin=0, vmax=vmax)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
            if cmap != "gray":
                fig.colorbar(im, ax=ax, fraction=0.046)
        fig.suptitle(str(item["id"]), fontsize=9)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(item["id"]))
        tmp = self.output_dir / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
        plt.close(fig)
        tmp.replace(self.output_dir / f"{name}.png")
