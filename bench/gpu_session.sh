#!/usr/bin/env bash
# Every check that needs a GPU, in one call of the device machine (a session is lent 15 minutes of it, start-up and
# transfers included), so that a session that draws one spends it on measuring, not on setting up.
#
#   bash bench/gpu_session.sh prepare   # here, with network: builds .gpu-kit/ (~50 MB, git-ignored)
#   bash bench/gpu_session.sh run       # there: the device tool's run, carry [".gpu-kit"], timeout_s 560
#
# The GPU machine has Python 3.12 with torch, numpy, networkx, xxhash, scikit-learn, scipy, matplotlib, tqdm and
# pytest, and no network. `prepare` downloads, for that Python, the packages it lacks (Ray, Optuna, DEAP, SQLAlchemy,
# mnist1d and their own needs), installs them into one folder, drops Ray's Java jar (32 MB, Java workers only) and
# packs the folder as .gpu-kit/site.tar.xz: the working tree that travels may not pass 64 MiB.
#
# `run` writes its logs under $OUT (at most 8 files come back) and gives each step its own time limit, so that a
# step that hangs costs only its own minutes. In order of what the open issues still ask for:
#   env.txt      the GPU, the versions
#   tests.log    the CUDA tests (-m gpu: compiled and exported optimizers, the proxy loop, batched rows, executor)
#   batched.log  bench_batched on the GPU, mnist1d-mlp, K = 1..1024 (issue 8: >= 300x the one-at-a-time loop)
#   search.log   autodisco search optimizer --executor ray on the GPU, then --batch auto (issues 7 and 8)
#   driver.log   bench_driver to 10k results on that machine's CPU, 8 and 256 in flight (issue 7: <= 1 ms per result)
#   export.log   bench_export --device cuda (exported optimizers against torch's AdamW and Lion)
# GPU_SESSION_DEVICE=cpu GPU_SESSION_QUICK=1 GPU_SESSION_KIT=0 PYTHON=.venv/bin/python bash bench/gpu_session.sh run
# tries the script's plumbing on a machine without a GPU, with a Python that has the packages (the kit unused).
set -u
cd "$(dirname "$0")/.."
KIT=.gpu-kit
PACKAGES="ray optuna deap sqlalchemy alembic mako colorlog mnist1d jsonschema jsonschema-specifications referencing
rpds-py"

prepare() {
    set -e
    local py=${PY312:-python3.12}
    rm -rf "$KIT" && mkdir -p "$KIT"
    # shellcheck disable=SC2086
    "$py" -m pip install -q --no-deps --only-binary=:all: --no-compile --target "$KIT/site" $PACKAGES
    rm -rf "$KIT/site/ray/jars" "$KIT/site/bin"
    find "$KIT/site" -name '*.map' -delete
    tar -cJf "$KIT/site.tar.xz" -C "$KIT" site
    rm -rf "$KIT/site"
    du -h "$KIT/site.tar.xz"
    echo "carry [\"$KIT\"] in the device call; the command: bash bench/gpu_session.sh run"
}

step() {  # step NAME SECONDS COMMAND...: the command's output into $OUT/NAME, its time and status after it
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    echo "== $(date -u +%T) $name ($limit s at most): $*" | tee -a "$OUT/$name"
    timeout -k 10 "$limit" "$@" >>"$OUT/$name" 2>&1
    local status=$?
    echo "== $name: exit $status after $((SECONDS - started)) s" | tee -a "$OUT/$name"
}

run() {
    OUT=${OUT:-/tmp/gpu-session-out}
    mkdir -p "$OUT"
    local py=${PYTHON:-python3} device=${GPU_SESSION_DEVICE:-cuda} quick=${GPU_SESSION_QUICK:-0}
    export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
    if [ -f "$KIT/site.tar.xz" ] && [ "${GPU_SESSION_KIT:-1}" != 0 ]; then
        # Python's tarfile, not tar: the image may lack xz; it keeps the files' modes (Ray's binaries run)
        "$py" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall("/tmp", filter="fully_trusted")' \
            "$KIT/site.tar.xz" || { echo "the kit did not unpack" >&2; exit 1; }
        export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
    local autodisco=("$py" -m search.cli._main)  # the `autodisco` command, from this checkout
    local ks="1 32 128 512 1024" single=8 steps=100 evaluations=48 batch_evaluations=256 marks="1000 10000" wide_marks="5000 10000"
    if [ "$quick" = 1 ]; then
        ks="1 8"; single=2; steps=10; evaluations=6; batch_evaluations=8; marks="200 400"; wide_marks="4000"
    fi
    {
        nvidia-smi 2>&1 | head -20
        "$py" - <<'EOF'
import importlib, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
for name in ("numpy", "ray", "optuna", "deap", "sqlalchemy", "mnist1d", "networkx", "xxhash"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as error:
        print(name, "MISSING", error)
EOF
        lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)"
    } >"$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
    step tests.log 150 "$py" -m pytest -p no:cacheprovider -o addopts="" -q -n 0 -rs -m gpu \
        tests/programs/test_compile.py tests/programs/test_export.py tests/evaluators/test_evaluate.py \
        tests/evaluators/test_batched_train.py tests/search/test_executor.py
    # shellcheck disable=SC2086
    step batched.log 200 "$py" bench/bench_batched.py --device "$device" --tasks mnist1d-mlp --ks $ks \
        --single "$single" --steps "$steps" --repeats 1
    local runs=/tmp/gpu-session-runs
    rm -rf "$runs"
    step search.log 120 "${autodisco[@]}" search optimizer --run "$runs/ray" --executor ray --task mnist1d-mlp \
        --evaluations "$evaluations" --population 16 --seed 0
    step search.log 30 "${autodisco[@]}" runs show "$runs/ray"
    step search.log 90 "${autodisco[@]}" search optimizer --run "$runs/batched" --batch auto --task mnist1d-mlp \
        --evaluations "$batch_evaluations" --population 64 --seed 0
    step search.log 30 "${autodisco[@]}" runs show "$runs/batched"
    # shellcheck disable=SC2086
    step driver.log 90 "$py" bench/bench_driver.py --fitness behaviour --store --marks $marks --baseline-marks
    # shellcheck disable=SC2086
    step driver.log 90 "$py" bench/bench_driver.py --fitness behaviour --store --marks $wide_marks --baseline-marks \
        --workers 256  # the width 1,000 evaluations/s implies: a transaction shared by ~250 results
    step export.log 60 "$py" bench/bench_export.py --device "$device" --rounds 10
    ls -la "$OUT"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash bench/gpu_session.sh prepare|run" >&2; exit 2 ;;
esac
