"""MONAI Deploy application of nad-monai (needs the ``deploy`` extra: ``pip install -e ".[deploy]"``).

Run it with ``python -m nad_monai.deploy -i dicom_in -o dicom_out``; ``nad_monai.deploy.app``
documents the options and ``nad_monai.deploy.operators`` the operators.
"""
