"""Rebuild the demo MR volumes in data/ from the real scans that ship inside installable packages.

Every output is a 3D NIfTI (.nii.gz) with the source affine kept, intensities normalised by the
project's rule (``nad_monai.intensity.unit_range``: min -> 0, 99.5th percentile -> 1, clipped),
stored as uint16 ``k`` with ``scl_slope = 2**-15`` so it loads as exact multiples of 1/32768 in
[0, 1]. nibabel writes gzip with a zero timestamp, so the bytes (and SHA-256 sums) are reproducible.

Sources (install them first; ``data/rebuild.sh`` does all of it):

    apt-get install mricron-data                                   # Colin27 (ch2.nii.gz)
    apt-get install insighttoolkit5-examples                       # ITK's example T1 (KmeansTest_T1UCharRaw)
    pip install --no-deps heudiconv==1.5.1 nilearn==0.14.1 dipy==1.12.1

Usage::

    python data/build_data.py            # write into data/
    python data/build_data.py --out DIR  # write elsewhere (data/rebuild.sh --check uses this)
"""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

with warnings.catch_warnings():  # nibabel warns that nicom is experimental; the mosaic unpacking is checked by eye and by sums
    warnings.simplefilter("ignore", UserWarning)
    from nibabel.nicom import dicomwrappers

from nad_monai.intensity import unit_range

SCALE = 2**15
"""Stored integer per unit intensity: voxel value = k / SCALE."""

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name}: package not installed (see the install steps in {__file__})")
    return Path(spec.submodule_search_locations[0])


def debian_dir(path: str, package: str) -> Path:
    """Folder that a Debian package installs; a clear exit if it is missing (not installed, or an
    image whose dpkg config drops ``/usr/share/doc``)."""
    if not Path(path).is_dir():
        raise SystemExit(f"{path}: not found; install the Debian package {package} (see the install steps in {__file__})")
    return Path(path)


def nifti_volume(path: Path, frame: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (3D, float) and RAS affine of a NIfTI file; ``frame`` picks one volume of a 4D file."""
    img = nib.load(path)
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    if frame is not None:
        data = data[..., frame]
    return np.squeeze(data), img.affine


def mosaic_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unpack a Siemens mosaic DICOM into a 3D volume and its RAS affine (nibabel.nicom)."""
    wrapper = dicomwrappers.wrapper_from_file(str(path))
    if not wrapper.is_mosaic:
        raise SystemExit(f"{path}: expected a Siemens mosaic DICOM")
    return wrapper.get_data().astype(np.float32), LPS_TO_RAS @ wrapper.affine


@dataclass(frozen=True)
class Volume:
    """One shipped file: its name in data/, how to read it, and where it came from."""

    name: str
    read: Callable[[], tuple[np.ndarray, np.ndarray]]
    source: str


def volumes() -> list[Volume]:
    """Every shipped volume, in datalist order."""
    mricron = debian_dir("/usr/share/mricron/templates", "mricron-data")
    itk_examples = debian_dir("/usr/share/doc/insighttoolkit5-examples/examples/Data", "insighttoolkit5-examples")
    heudiconv = package_dir("heudiconv") / "tests/data/b0dwiForFmap"
    nilearn = package_dir("nilearn") / "datasets/data"
    nibabel_data = package_dir("nibabel") / "tests/data"
    dipy = package_dir("dipy") / "data/files"
    return [
        Volume("colin27_t1.nii.gz", lambda: nifti_volume(mricron / "ch2.nii.gz"), "mricron-data ch2.nii.gz"),
        Volume(
            "mni152_2009a_t1.nii.gz",
            lambda: nifti_volume(nilearn / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
            "nilearn mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        ),
        Volume(
            "heudiconv_b0_run1.nii.gz",
            lambda: mosaic_volume(heudiconv / "b0dwi_for_fmap+00001.dcm"),
            "heudiconv b0dwi_for_fmap+00001.dcm",
        ),
        Volume(
            "heudiconv_b0_run2.nii.gz",
            lambda: mosaic_volume(heudiconv / "b0dwi_for_fmap+00002.dcm"),
            "heudiconv b0dwi_for_fmap+00002.dcm",
        ),
        Volume(
            "heudiconv_b1500.nii.gz",
            lambda: mosaic_volume(heudiconv / "b0dwi_for_fmap+00003.dcm"),
            "heudiconv b0dwi_for_fmap+00003.dcm",
        ),
        Volume(
            "nibabel_epi_vol0.nii.gz",
            lambda: nifti_volume(nibabel_data / "example4d.nii.gz", frame=0),
            "nibabel example4d.nii.gz, volume 0",
        ),
        Volume(
            "nibabel_epi_vol1.nii.gz",
            lambda: nifti_volume(nibabel_data / "example4d.nii.gz", frame=1),
            "nibabel example4d.nii.gz, volume 1",
        ),
        Volume("dipy_s0.nii.gz", lambda: nifti_volume(dipy / "S0_10slices.nii.gz"), "dipy S0_10slices.nii.gz"),
        Volume("dipy_aniso_vox.nii.gz", lambda: nifti_volume(dipy / "aniso_vox.nii.gz"), "dipy aniso_vox.nii.gz"),
        Volume(
            "itk_kmeans_t1.nii.gz",
            lambda: nifti_volume(itk_examples / "KmeansTest_T1UCharRaw.nii.gz"),
            "insighttoolkit5-examples KmeansTest_T1UCharRaw.nii.gz",
        ),
    ]


def _canonical_quaternion(header: nib.Nifti1Header) -> None:
    """Make the qform quaternion ``(b, c, d)`` independent of the LAPACK build that nibabel's
    eigen-decomposition ran on: components under 1e-6 (rounding noise) become 0, and for a half turn
    (``quatern_a = 0``), where ``q`` and ``-q`` are the same rotation, the first nonzero component is
    made positive. So the bytes, and the SHA-256 sums, do not depend on the machine."""
    keys = ("quatern_b", "quatern_c", "quatern_d")
    q = np.array([float(header[k]) for k in keys])
    q[np.abs(q) < 1e-6] = 0.0
    nonzero = np.flatnonzero(q)
    if nonzero.size and 1.0 - float(np.sum(q**2)) < 1e-6 and q[nonzero[0]] < 0:
        q = -q
    for key, value in zip(keys, q):
        header[key] = value + 0.0  # + 0.0 turns -0.0 into 0.0


def write_unit_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Normalise ``data`` to [0, 1] and write it as uint16 with slope 1/SCALE (temp file, then rename)."""
    stored = np.rint(unit_range(data) * SCALE).astype(np.uint16)
    img = nib.Nifti1Image(stored, affine)
    img.header.set_slope_inter(1.0 / SCALE, 0.0)
    img.header.set_xyzt_units(xyz="mm")
    img.set_qform(affine, code="scanner")
    img.set_sform(affine, code="scanner")
    _canonical_quaternion(img.header)
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    img.to_filename(tmp)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="output folder (default: data/)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for vol in volumes():
        data, affine = vol.read()
        write_unit_nifti(data, affine, args.out / vol.name)
        print(f"{vol.name:28s} {'x'.join(map(str, data.shape)):12s} from {vol.source}")


if __name__ == "__main__":
    main()
