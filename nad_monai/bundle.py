"""Where the bundle lives, for configs run as ``python -m monai.bundle run --config_file .../configs/x.json``.

MONAI's ``run`` does not give configs the location of their own file, and ``"bundle_root": "."``
means the current directory; ``bundle_root()`` finds the bundle from the config file named on the
command line instead, so checkpoints land in ``<bundle>/models`` whatever the current directory.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import torch
from ignite.engine import Engine
from monai.handlers import CheckpointLoader

import nad_monai


def _config_file_from_argv(argv: list[str]) -> str | None:
    """First config file given to ``--config_file`` (a path, or a list of paths as fire parses it)."""
    for i, arg in enumerate(argv):
        if arg == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        else:
            continue
        if value.startswith("["):
            value = ast.literal_eval(value)[0]
        return value
    return None


def bundle_root(argv: list[str] | None = None) -> str:
    """Absolute path of the bundle folder (the one holding ``configs/``).

    Taken from ``--config_file`` on the command line (``<bundle>/configs/train.json`` -> ``<bundle>``);
    without one (the Python API), the ``bundle/`` folder of the source checkout nad_monai is
    installed from; failing that, the current directory. Pass ``bundle_root`` explicitly to override.
    """
    config_file = _config_file_from_argv(sys.argv if argv is None else argv)
    if config_file is not None:
        folder = Path(config_file).resolve().parent
        return str(folder.parent if folder.name == "configs" else folder)
    checkout = Path(nad_monai.__file__).resolve().parents[1] / "bundle"
    return str(checkout) if (checkout / "configs").is_dir() else os.getcwd()


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> str:
    """Newest training checkpoint (``<prefix>_*.pt``, by modification time) in ``ckpt_dir``, for resuming.

    Raises:
        FileNotFoundError: there is none, with a one-line message naming the folder.
    """
    found = sorted(Path(ckpt_dir).glob(f"{prefix}_*.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{ckpt_dir}: no {prefix}_*.pt training checkpoint to resume from")
    return str(found[-1])


def resume_from_latest(trainer: Engine, load_dict: dict, ckpt_dir: str | os.PathLike, map_location: str | torch.device | None = None) -> str:
    """Attach MONAI's ``CheckpointLoader`` for the newest checkpoint in ``ckpt_dir`` to ``trainer``.

    The trainer then restores network, optimizer, scheduler and its own epoch/iteration when it
    starts, and continues from the end of the last saved epoch. Returns the checkpoint path.
    """
    path = latest_checkpoint(ckpt_dir)
    CheckpointLoader(load_path=path, load_dict=load_dict, map_location=map_location).attach(trainer)
    return path


def warm_start(network: torch.nn.Module, path: str | os.PathLike) -> list[str]:
    """Initialise ``network`` from the weights of a related architecture (e.g. fewer steps, 1x1 layers).

    Copies every tensor of the state dict at ``path`` whose name and shape match; the first K step
    sizes of a deeper model; a 3x3 kernel into a 1x1 one of the same channels as the sum of its
    taps (the same response to a constant input). DDP/DataParallel wrappers are looked through.
    Returns the names left at their initial values.
    """
    target = getattr(network, "module", network)
    source = torch.load(path, map_location="cpu", weights_only=True)
    own = target.state_dict()
    copied = {}
    for name, value in source.items():
        if name not in own:
            continue
        shape = own[name].shape
        if name == "step_logits" and value.numel() >= shape.numel():
            copied[name] = value[: shape.numel()]
        elif value.shape == shape:
            copied[name] = value
        elif value.dim() == 4 and shape == value.shape[:2] + (1, 1):
            copied[name] = value.sum((2, 3), keepdim=True)
    target.load_state_dict(copied, strict=False)
    return sorted(set(own) - set(copied))
