#!/usr/bin/env bash
# The GPU device check in one command (see bench/device_check.py for the steps):
#
#   bash bench/device_check.sh            # GPU machine: results in $OUT (summary.md, results.json, logs)
#   bash bench/device_check.sh --dry      # or DRY=1: the same steps on the CPU, tiny model, seconds
#   bash bench/device_check.sh --stage    # before sending the checkout to a machine without ../shared:
#                                         # copy the golden data the CUDA tests read (9.5 MB) into ./shared
#
# On a machine without internet, first carry the wheels fetched by bench/fetch_wheels.sh in .whl/
# (an ignored folder in the repository root): what is missing is installed from there, nothing else.
# Runs from the repository root; no install of vswin itself (PYTHONPATH points at this checkout).
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--stage" ]]; then
    # The device tool copies untracked files, so ./shared travels with the checkout; tests/test_cuda.py
    # reads it where ../shared is absent. Remove it afterwards (never commit it).
    src=${SHARED_SRC:-../shared}
    [[ -d "$src/fixtures/official" ]] || { echo "no $src/fixtures/official beside the checkout" >&2; exit 1; }
    mkdir -p shared/fixtures shared/videos
    cp -r "$src/fixtures/official" shared/fixtures/
    for video in bikes.mp4 chaplin.mp4 portrait_180x320.mp4 frames_64.mp4; do cp "$src/videos/$video" shared/videos/; done
    echo "staged $(du -sh shared | cut -f1) in ./shared (untracked: remove it with 'rm -rf shared' afterwards)"
    exit 0
fi
DRY_FLAG=()
if [[ "${1:-}" == "--dry" || "${DRY:-0}" == "1" ]]; then DRY_FLAG=(--dry); fi
OUT=${OUT:-$PWD/device-check-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-$(command -v python || command -v python3)}

# Install what is missing from the carried wheels (never from the network), time-boxed: every wheel
# in .whl/ into a private folder put first on PYTHONPATH (--no-deps: the folder holds the whole set;
# no system site-packages touched, so no root and no PEP 668 refusal).
SITE=${VSWIN_WHEEL_SITE:-/tmp/vswin-device-check-site}
missing=()
for module in av pytest hypothesis; do
    "$PY" -c "import $module" 2>/dev/null || missing+=("$module")
done
if ((${#missing[@]})); then
    if ls .whl/*.whl >/dev/null 2>&1; then
        echo "missing ${missing[*]}: installing the wheels in .whl/ into $SITE"
        timeout -k 5 120 "$PY" -m pip install --no-index --no-deps --upgrade --target "$SITE" .whl/*.whl \
            >"$OUT/install.log" 2>&1 || echo "pip install failed (see $OUT/install.log)"
        export PYTHONPATH="$PWD:$SITE${PYTHONPATH#"$PWD"}"
    else
        echo "missing ${missing[*]} and no .whl/ folder (run bench/fetch_wheels.sh where there is internet)" \
            | tee "$OUT/install.log"
    fi
fi
exec "$PY" bench/device_check.py --out "$OUT" "${DRY_FLAG[@]}"
