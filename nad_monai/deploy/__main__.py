"""``python -m nad_monai.deploy -i dicom_in -o dicom_out``: see ``nad_monai.deploy.app``."""

from nad_monai.deploy.app import main  # absolute: the packager runs this folder as a script

raise SystemExit(main())
