"""The project installs and runs the way the README says."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README has a Quick start bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_set_up_main_job_and_test_commands():
    setup, main_job, tests = quick_start_commands()
    assert "torch==2.13.0" in setup, "the CPU wheel must be pinned in the same pip command"
    assert main_job == "python -m monai.bundle run training --config_file bundle/configs/train.json"
    assert (ROOT / "bundle" / "configs" / "train.json").is_file()  # test_bundle.py runs it on tiny data
    assert tests == "python -m pytest -q"


def test_ci_runs_the_readme_set_up_and_test_commands_word_for_word():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    setup, _, tests = quick_start_commands()
    assert setup in ci_lines and tests in ci_lines


def test_transforms_package_imports_from_any_directory(tmp_path):
    code = "import transforms, nad_monai; print(transforms.RandRicianCorruptiond.__name__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "RandRicianCorruptiond"


def test_no_torchvision_dependency():
    assert "torchvision" not in (ROOT / "setup.cfg").read_text()
