#!/usr/bin/env bash
# Rebuild every volume in data/ from the packages it comes from, then check the SHA-256 sums.
#   bash data/rebuild.sh          install the sources, rebuild into data/, check sums
#   bash data/rebuild.sh --check  rebuild into a temporary folder and only compare sums
# Run it inside the project's environment (README set-up); it needs root for apt-get.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

itk_t1=/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz
if [ ! -f /usr/share/mricron/templates/ch2.nii.gz ] || [ ! -f "$itk_t1" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mricron-data insighttoolkit5-examples
fi
# Only their data files are used: --no-deps keeps heavy dependency trees out.
python -m pip install -q --no-deps heudiconv==1.5.1 nilearn==0.14.1 dipy==1.12.1

out="$here"
if [ "${1:-}" = "--check" ]; then
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
    cp "$here/SHA256SUMS" "$out/"
fi
python "$here/build_data.py" --out "$out"
(cd "$out" && sha256sum --check --strict SHA256SUMS)
