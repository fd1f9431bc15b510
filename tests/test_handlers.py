"""Crash-safe checkpoints: a save interrupted mid-write leaves the previous files whole and loadable."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from nad_monai.handlers import CrashSafeCheckpointSaver


def _engine(metrics: list[float]) -> Engine:
    engine = Engine(lambda engine, batch: None)
    engine.state.key_metric_name = "val_psnr"

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(engine):
        engine.state.metrics["val_psnr"] = metrics[engine.state.epoch - 1]

    return engine


def _interrupt_save(monkeypatch, at: int) -> None:
    """torch.save that, on its ``at``-th call, writes some bytes of the file, then dies as a kill would."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == at:
            f.write(b"PK\x03\x04 truncated")
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_interrupted_epoch_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 1)
    engine = _engine([1.0, 2.0, 3.0])
    CrashSafeCheckpointSaver(tmp_path, {"network": net, "optimizer": torch.optim.SGD(net.parameters(), 0.1)}).attach(engine)
    _interrupt_save(monkeypatch, at=3)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0, 1], max_epochs=3)  # 2 iterations per epoch: files are named by epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=2.pt"], "no partial or temporary file left"
    net.load_state_dict(torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)["network"])


def _epochs_set_the_weights(engine: Engine, net: torch.nn.Module) -> None:
    @engine.on(Events.EPOCH_COMPLETED)
    def _set(engine):
        with torch.no_grad():
            net.weight.fill_(float(engine.state.epoch))


def _saved_weight(path) -> float:
    return torch.load(path, weights_only=True)["weight"][0, 0].item()


def test_best_model_is_replaced_only_by_a_better_one_and_never_truncated(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 1)
    engine = _engine([1.0, 0.5, 2.0, 1.5])
    _epochs_set_the_weights(engine, net)
    saver = CrashSafeCheckpointSaver(tmp_path, {"model": net}, key_metric_filename="model.pt")
    saver.attach(engine)
    engine.run([0], max_epochs=4)
    assert _saved_weight(tmp_path / "model.pt") == 3.0, "epoch 3 had the best score"

    resumed = CrashSafeCheckpointSaver(tmp_path, {"model": net}, key_metric_filename="model.pt")
    resumed.load_state_dict(saver.state_dict())
    engine = _engine([1.8, 9.0, 10.0])
    _epochs_set_the_weights(engine, net)
    resumed.attach(engine)
    _interrupt_save(monkeypatch, at=1)  # epoch 1 (1.8 < 2.0) saves nothing; epoch 2 (9.0) is killed mid-save
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=3)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert _saved_weight(tmp_path / "model.pt") == 3.0, "1.8 < 2.0 kept the old best; the interrupted save left it whole"
