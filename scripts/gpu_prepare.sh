#!/usr/bin/env bash
# Prepare the GPU route's carry folder .gpu/ (git-ignored) on this machine, which reaches PyPI: the default
# model packed to fit the device tool's 64 MiB (scripts/gpu_pack.py) and the wheels of the packages the
# sweep needs that the GPU image lacks (jsonschema and its dependencies, for Python 3.12 there).
# Then one device call runs the whole route (about 8 minutes):
#
#   run(carry=[".gpu"], timeout_s=600, command=
#     "python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
#      HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 && python3 scripts/gpu_pack.py unpack && python3 scripts/gpu_sweep.py
#      --model .gpu/model --minutes 7.5 --store /tmp/gpu --out $OUT/gpu 2>&1 | tee $OUT/log")
#
# and the merged results come back under $OUT/gpu/<task>.json: copy them to assets/sweeps/gpu/ and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu/whl
PY=${PY:-.venv/bin/python}
"$PY" scripts/gpu_pack.py pack
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .gpu/whl \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
du -sh .gpu
