"""Real MR data as DICOM test series: a classic MR Image Storage series and an Enhanced MR multi-frame file.

Both hold the same crop of Colin27 (``data/colin27_t1.nii.gz``), 12 coronal slices of 80 x 90
pixels, as 12-bit stored values with RescaleSlope 1.5 and RescaleIntercept -20, pixel spacing
0.9 mm (between rows) x 1.1 mm (between columns), 2.5 mm between slices. Files (classic) and
frames (enhanced) are stored out of spatial order, so readers must sort them. Built with pydicom
so that ``dciodvfy`` reports no errors on either (only warnings about the MR rescale in classic).
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

DATA = Path(__file__).resolve().parents[1] / "data"
SLOPE, INTERCEPT = 1.5, -20.0
ROW_SPACING, COL_SPACING, SLICE_GAP = 0.9, 1.1, 2.5
IOP = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # coronal: rows run along +x (patient left), columns down (-z)
ORIGIN = np.array([-40.0, -15.0, 60.0])
NORMAL = np.cross(IOP[:3], IOP[3:])  # +y (posterior)
SHUFFLE = 7  # slice k is stored as file / frame (SHUFFLE * k) % n
DCIODVFY = shutil.which("dciodvfy")


@lru_cache(maxsize=1)
def stored_crop() -> np.ndarray:
    """uint16 ``(12, 80, 90)`` stored values 0..2048 (slices along y, rows down z, columns along x)."""
    k = np.asarray(nib.load(DATA / "colin27_t1.nii.gz").dataobj.get_unscaled())  # uint16, 0..32768
    crop = k[45:135, 100:124:2, 40:120]  # (x, y, z) = (90, 12, 80)
    vol = np.flip(crop.transpose(1, 2, 0), axis=1)
    return np.round(vol / 16).astype(np.uint16)


def real_values() -> np.ndarray:
    """The fixture volume in real-world units, float64 ``(12, 80, 90)``."""
    return stored_crop() * SLOPE + INTERCEPT


def position(k: int) -> list[float]:
    return [float(v) for v in ORIGIN + k * SLICE_GAP * NORMAL]


def affine_lps() -> np.ndarray:
    """Voxel ``(slice, row, col)`` to patient LPS mm, as ``DicomSeries.affine`` should give."""
    affine = np.eye(4)
    affine[:3, 0] = NORMAL * SLICE_GAP
    affine[:3, 1] = np.array(IOP[3:]) * ROW_SPACING
    affine[:3, 2] = np.array(IOP[:3]) * COL_SPACING
    affine[:3, 3] = ORIGIN
    return affine


def _item(**attrs) -> Dataset:
    ds = Dataset()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _common(sop_class: str) -> Dataset:
    """Patient, study, series, frame of reference and equipment attributes."""
    return _item(
        SpecificCharacterSet="ISO_IR 100",
        SOPClassUID=sop_class,
        PatientName="Holmes^Colin",
        PatientID="COLIN27",
        PatientBirthDate="",
        PatientSex="M",
        StudyInstanceUID=generate_uid(),
        StudyDate="19980101",
        StudyTime="120000",
        ReferringPhysicianName="",
        StudyID="1",
        AccessionNumber="",
        Modality="MR",
        SeriesInstanceUID=generate_uid(),
        SeriesNumber=3,
        SeriesDescription="T1 coronal crop",
        FrameOfReferenceUID=generate_uid(),
        PositionReferenceIndicator="",
        Manufacturer="nad-monai test fixture",
        BodyPartExamined="HEAD",
        PatientPosition="HFS",
        ContentDate="19980101",
        ContentTime="120000",
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        BitsAllocated=16,
        BitsStored=12,
        HighBit=11,
        PixelRepresentation=0,
    )


def _save(ds: Dataset, path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def write_classic(folder: Path, stored: np.ndarray | None = None) -> list[Path]:
    """An MR Image Storage series, one file per slice named ``IM<nnnn>`` in shuffled order."""
    stored = stored_crop() if stored is None else stored
    if len(stored) % SHUFFLE == 0:
        raise ValueError(f"{len(stored)} slices: file names (SHUFFLE * k) % n would repeat; use a count not divisible by {SHUFFLE}")
    folder.mkdir(parents=True)
    common = _common(MRImageStorage)
    paths = []
    for k, plane in enumerate(stored):
        ds = Dataset()
        ds.update(common)
        ds.SOPInstanceUID = generate_uid()
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.InstanceNumber = k + 1
        ds.PatientOrientation = ""
        ds.ImagePositionPatient = position(k)
        ds.ImageOrientationPatient = IOP
        ds.PixelSpacing = [ROW_SPACING, COL_SPACING]
        ds.SliceThickness = SLICE_GAP
        ds.SliceLocation = position(k)[1]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "3D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength, ds.MagneticFieldStrength = 18, 10, 1, 1.5
        ds.Rows, ds.Columns = plane.shape
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = INTERCEPT, SLOPE, "US"
        ds.PixelData = plane.astype("<u2").tobytes()
        path = folder / f"IM{(SHUFFLE * k) % len(stored):04d}"
        _save(ds, path)
        paths.append(path)
    return paths


def write_enhanced(path: Path, stored: np.ndarray | None = None) -> Path:
    """An Enhanced MR Image Storage file (ORIGINAL, every functional group an ORIGINAL image needs)."""
    stored = stored_crop() if stored is None else stored
    n, rows, cols = stored.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _common(EnhancedMRImageStorage)
    ds.SOPInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.AcquisitionDateTime, ds.AcquisitionDuration = "19980101120000", 300.0
    ds.ManufacturerModelName, ds.DeviceSerialNumber, ds.SoftwareVersions = "fixture", "0", "0"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = Sequence([])
    # Enhanced MR Image module
    contrast = {
        "PixelPresentation": "MONOCHROME",
        "VolumetricProperties": "VOLUME",
        "VolumeBasedCalculationTechnique": "NONE",
        "ComplexImageComponent": "MAGNITUDE",
        "AcquisitionContrast": "T1",
    }
    ds.update(_item(**contrast))
    ds.ContentQualification, ds.ResonantNucleus, ds.KSpaceFiltering = "RESEARCH", "1H", "NONE"
    ds.MagneticFieldStrength, ds.ApplicableSafetyStandardAgency = 1.5, "IEC"
    ds.ImageComments, ds.BurnedInAnnotation, ds.LossyImageCompression = "test fixture", "NO", "00"
    # MR Pulse Sequence module (required for ORIGINAL images)
    ds.update(
        _item(
            PulseSequenceName="GRE",
            MRAcquisitionType="3D",
            EchoPulseSequence="GRADIENT",
            MultiPlanarExcitation="NO",
            PhaseContrast="NO",
            TimeOfFlightContrast="NO",
            SteadyStatePulseSequence="NONE",
            EchoPlanarPulseSequence="NO",
            SaturationRecovery="NO",
            SpectrallySelectedSuppression="NONE",
            OversamplingPhase="NONE",
            GeometryOfKSpaceTraversal="RECTILINEAR",
            RectilinearPhaseEncodeReordering="LINEAR",
            SegmentedKSpaceTraversal="SINGLE",
            CoverageOfKSpace="FULL",
            NumberOfKSpaceTrajectories=1,
        )
    )
    # Multi-frame Dimension module: one dimension, the position in the stack
    dimension_uid = generate_uid()
    ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=dimension_uid)])
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = Sequence(
        [
            _item(
                DimensionOrganizationUID=dimension_uid,
                DimensionIndexPointer=0x00209057,  # In-Stack Position Number
                FunctionalGroupPointer=0x00209111,  # Frame Content Sequence
                DimensionDescriptionLabel="In-Stack Position",
            )
        ]
    )
    shared = _item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[ROW_SPACING, COL_SPACING], SliceThickness=SLICE_GAP)]),
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=IOP)]),
        PixelValueTransformationSequence=Sequence([_item(RescaleIntercept=INTERCEPT, RescaleSlope=SLOPE, RescaleType="US")]),
        FrameAnatomySequence=Sequence(
            [
                _item(
                    FrameLaterality="U",
                    AnatomicRegionSequence=Sequence([_item(CodeValue="12738006", CodingSchemeDesignator="SCT", CodeMeaning="Brain")]),
                )
            ]
        ),
        MRImageFrameTypeSequence=Sequence([_item(FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], **contrast)]),
        MRTimingAndRelatedParametersSequence=Sequence(
            [
                _item(
                    RepetitionTime=18,
                    FlipAngle=30,
                    EchoTrainLength=1,
                    RFEchoTrainLength=1,
                    GradientEchoTrainLength=1,
                    SpecificAbsorptionRateSequence=Sequence(
                        [_item(SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY", SpecificAbsorptionRateValue=0.1)]
                    ),
                    GradientOutputType="DB_DT",
                    GradientOutput=0.5,
                    OperatingModeSequence=Sequence([_item(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL")]),
                )
            ]
        ),
        MRFOVGeometrySequence=Sequence(
            [
                _item(
                    InPlanePhaseEncodingDirection="ROW",
                    MRAcquisitionFrequencyEncodingSteps=cols,
                    MRAcquisitionPhaseEncodingStepsInPlane=rows,
                    MRAcquisitionPhaseEncodingStepsOutOfPlane=n,
                    PercentSampling=100,
                    PercentPhaseFieldOfView=100,
                )
            ]
        ),
        MREchoSequence=Sequence([_item(EffectiveEchoTime=10)]),
        MRModifierSequence=Sequence(
            [
                _item(
                    InversionRecovery="NO",
                    FlowCompensation="NONE",
                    Spoiling="RF",
                    T2Preparation="NO",
                    SpectrallySelectedExcitation="NONE",
                    SpatialPresaturation="NONE",
                    PartialFourier="NO",
                    ParallelAcquisition="NO",
                )
            ]
        ),
        MRImagingModifierSequence=Sequence(
            [_item(MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE", TransmitterFrequency=63.9, PixelBandwidth=200)]
        ),
        MRReceiveCoilSequence=Sequence(
            [_item(ReceiveCoilName="HEAD", ReceiveCoilType="VOLUME", ReceiveCoilManufacturerName="", QuadratureReceiveCoil="YES")]
        ),
        MRTransmitCoilSequence=Sequence([_item(TransmitCoilName="BODY", TransmitCoilType="BODY", TransmitCoilManufacturerName="")]),
        MRAveragesSequence=Sequence([_item(NumberOfAverages=1)]),
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    order = [(SHUFFLE * k) % n for k in range(n)]  # frame f holds slice order[f]
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [
            _item(
                FrameContentSequence=Sequence(
                    [
                        _item(
                            FrameAcquisitionDateTime="19980101120000",
                            FrameReferenceDateTime="19980101120000",
                            FrameAcquisitionDuration=300.0,
                            StackID="1",
                            InStackPositionNumber=k + 1,
                            DimensionIndexValues=[k + 1],
                        )
                    ]
                ),
                PlanePositionSequence=Sequence([_item(ImagePositionPatient=position(k))]),
            )
            for k in order
        ]
    )
    ds.PixelData = stored[order].astype("<u2").tobytes()
    _save(ds, path)
    return path


def dciodvfy_errors(path: Path) -> set[str]:
    """The ``Error`` lines dciodvfy prints for one file (it exits non-zero when there are any)."""
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60, check=False)
    return {line.strip() for line in (run.stdout + run.stderr).splitlines() if "Error" in line}


def sitk_image(folder: Path) -> sitk.Image:
    """The series in ``folder`` as SimpleITK (GDCM) reads it."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()
