#!/usr/bin/env bash
# Download the wheels a GPU machine without internet lacks, for Python 3.12 manylinux x86_64, into
# an ignored folder beside the checkout (default: .whl/ in the repository root). The device check
# (bench/device_check.sh) installs them first with `pip install --no-index --find-links .whl ...`.
#
#   bash bench/fetch_wheels.sh                 # -> .whl/ : av + pytest + hypothesis (about 38 MB)
#   bash bench/fetch_wheels.sh --with-decord   # also decord2 (+27 MB)
#   WHEEL_DIR=/tmp/w bash bench/fetch_wheels.sh
#
# The GPU machine has torch, torchvision, typer, rich, pandas (hence numpy), einops
# and tqdm. It lacks the decoders (av, decord2) and the test tools (pytest and its dependencies,
# hypothesis). Everything here is a binary wheel (--only-binary=:all:), resolved for the target, not
# for this machine.
#
# decord2 is opt-in: the device tool carries at most 64 MiB with the working tree, and av (35 MB) plus
# decord2 (27 MB) alone fill it. Without decord2, `vswin tag --backend auto` decodes with PyAV, which
# numbers frames identically (the pipeline tests); the device check does not need decord.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL_DIR=${WHEEL_DIR:-.whl}
PYVER=${PYVER:-3.12}
PLATFORM=${PLATFORM:-manylinux2014_x86_64}
# Versions as pyproject.toml asks; numpy is pinned to the 2.x line the GPU image's pandas needs anyway.
# av at the version this machine's tests ran with (same FFmpeg build, same frames), else pyproject's range.
AV_SPEC=${AV_SPEC:-$(python -c 'import av; print("av==" + av.__version__)' 2>/dev/null || echo "av>=12")}
PACKAGES=("$AV_SPEC" "pytest>=8" "hypothesis>=6.90")
if [[ "${1:-}" == "--with-decord" ]]; then
    PACKAGES+=("decord2>=3.4,<4")
fi
mkdir -p "$WHEEL_DIR"
# pip resolves dependencies for the target; --platform is repeated so that newer manylinux tags (which
# av and decord2 publish) are accepted alongside manylinux2014.
python -m pip download --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform "$PLATFORM" --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_34_x86_64 --platform any \
    --dest "$WHEEL_DIR" "${PACKAGES[@]}"
# numpy comes with the GPU image (pandas, torch); drop the copy pip fetched for decord2 (16 MB) so the
# carried folder stays small. pygments stays (1 MB): pytest needs it and rich may not bring it along.
rm -f "$WHEEL_DIR"/numpy-*.whl
echo "wheels in $WHEEL_DIR ($(du -sh "$WHEEL_DIR" | cut -f1)):"
ls -1 "$WHEEL_DIR"
