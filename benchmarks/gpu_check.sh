#!/usr/bin/env bash
# The device check for the first GPU: one command, <= 8 minutes on one H100/H200 from a bare
# machine (installing included).  See benchmarks/README.md, "The device check".
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --fetch-wheels  # beforehand, where PyPI is reachable:
#                                                #   the wheels a bare device lacks, into .whl/
#   bash benchmarks/gpu_check.sh --dry-run       # any machine: the same steps on the CPU,
#                                                #   a tiny phantom, results to a temp folder
#
# Steps: (1) environment: python3 (default; $PYTHON to change) must import numpy < 2.5
# (numba-cuda 0.30 breaks with numpy >= 2.5), numba-cuda >= 0.30, h5py, scipy, torch, cupy
# and mcdose's own data packages; what is missing or too new is installed from the wheels
# in $MCDOSE_WHEELS (default .whl/) into a private folder put first on PYTHONPATH (no
# network needed).  (2) the `-m gpu` tests (JUnit XML kept).  (3) the measurements
# (benchmarks/suite/gpu_check.py): MC first call cold and cached, MC 1e9 decays on the
# paper phantom, CPU/GPU agreement, VDK with CuPy, CNN inference; JSON + Markdown into
# benchmarks/results/ and the README's benchmark section.  Logs: $MCDOSE_CHECK_LOGS
# (default $OUT/gpu-check when $OUT is set, else /tmp/mcdose-gpu-check).
# Exit status: 0 all passed; 1 a test or measurement failed; 2 the environment is unusable.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PY=${PYTHON:-python3}
WHEELS=${MCDOSE_WHEELS:-$ROOT/.whl}
SITE=${MCDOSE_SITE:-/tmp/mcdose-site}
LOGS=${MCDOSE_CHECK_LOGS:-${OUT:+$OUT/gpu-check}}
LOGS=${LOGS:-/tmp/mcdose-gpu-check}
DRY=0
FETCH=0
#: wheels a bare device image lacks (its python3 is 3.12 and has torch, cupy, numba-cuda,
#: h5py, scipy, numpy 2.5): ~29 MB; numba-cuda pinned to the version this project is tested
#: with; sqlalchemy for xraydb (photon cross sections)
FETCH_WHEELS=("numpy==2.4.6" "numba-cuda==0.30.4" "icrp107-database==0.0.3" "xraydb==4.5.8"
              "platformdirs==4.14.9" "sqlalchemy==2.1.9")

for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --fetch-wheels) FETCH=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: error: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$FETCH" = 1 ]; then
  mkdir -p "$WHEELS"
  exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" \
    "${FETCH_WHEELS[@]}"
fi

mkdir -p "$LOGS"
T0=$(date +%s)
say() { echo "[gpu_check $(( $(date +%s) - T0 )) s] $*"; }
export MCDOSE_NO_PROGRESS=1 PYTHONUNBUFFERED=1
# one numba cache for the whole check: the tests compile the kernels, later steps load them
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/mcdose-numba-cache}
export PYTHONPATH="$ROOT/src:$ROOT/cli${PYTHONPATH:+:$PYTHONPATH}"

# -- 1. environment ------------------------------------------------------------------------
# prints "<distribution> <why>" for each missing or unusable one; exit 1 if any
check_env() {
  "$PY" - <<'EOF'
import importlib, sys
from importlib.metadata import version
bad = []
def ver(dist):
    try:
        return tuple(int(x) for x in version(dist).split(".")[:2])
    except Exception:
        return None
v = ver("numpy")
if v is None or v >= (2, 5):
    bad.append("numpy " + ("missing" if v is None else version("numpy") + " (numba-cuda 0.30 needs < 2.5)"))
v = ver("numba-cuda")
if v is None or v < (0, 30):
    bad.append("numba_cuda " + ("missing" if v is None else version("numba-cuda") + " (needs >= 0.30)"))
for dist in ("sqlalchemy", "platformdirs", "icrp107_database", "xraydb"):  # xraydb needs the 2 first
    try:
        importlib.import_module(dist)
    except Exception as exc:
        bad.append(f"{dist} {type(exc).__name__}")
for mod in ("numba", "scipy", "h5py"):  # the device image's own; no wheel carried
    try:
        importlib.import_module(mod)
    except Exception as exc:
        bad.append(f"{mod} {type(exc).__name__} (not carried: install it)")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
}

say "python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
if ! missing=$(check_env); then
  say "missing or unusable: $(echo "$missing" | tr '\n' ';')"
  wheels=()
  for dist in $(echo "$missing" | cut -d' ' -f1); do
    found=$(ls "$WHEELS/$dist"-*.whl 2>/dev/null | head -1)
    if [ -n "$found" ]; then wheels+=("$found"); fi
  done
  if [ "${#wheels[@]}" -gt 0 ]; then
    say "installing from $WHEELS into $SITE: ${wheels[*]##*/}"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "${wheels[@]}" > "$LOGS/pip.log" 2>&1 \
      || { say "pip failed: $(tail -3 "$LOGS/pip.log")"; exit 2; }
    export PYTHONPATH="$ROOT/src:$ROOT/cli:$SITE${PYTHONPATH#"$ROOT/src:$ROOT/cli"}"
  fi
  if ! missing=$(check_env); then
    say "still unusable: $(echo "$missing" | tr '\n' ';')"
    say "fetch the wheels where pip works: bash benchmarks/gpu_check.sh --fetch-wheels"
    exit 2
  fi
fi
"$PY" - <<'EOF' | tee "$LOGS/environment.txt"
from importlib.metadata import version
for d in ("numpy", "numba", "numba-cuda", "scipy", "h5py", "torch", "cupy-cuda13x",
          "cupy-cuda12x"):
    try:
        print(f"  {d} {version(d)}")
    except Exception:
        pass
EOF
if [ "$DRY" = 0 ]; then
  if ! command -v nvidia-smi >/dev/null; then say "no nvidia-smi: not a GPU machine"; exit 2; fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOGS/gpu.txt"
fi

# -- 2. the -m gpu tests ------------------------------------------------------------------
status=0
# only the files that hold GPU tests: collecting the whole suite needs SimpleITK & co.
gpu_files=$(grep -rl --include='test_*.py' -E 'mark\.gpu' tests | sort)
say "-m gpu tests: $(echo $gpu_files)"
timeout 210 "$PY" -m pytest -m gpu -q -p no:randomly -p no:cacheprovider -rfEs \
  --junitxml "$LOGS/gpu-tests.xml" $gpu_files \
  > "$LOGS/gpu-tests.log" 2>&1
rc=$?
tail -5 "$LOGS/gpu-tests.log"
# 5: none collected (dry run: all skipped is rc 0)
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then status=1; fi

# -- 3. the measurements ------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  res=$(mktemp -d /tmp/mcdose-gpu-check-results.XXXX)
  args=(--device cpu --preset tiny --histories 20000 --probe 5000 --agreement-histories 20000
        --out "$res" --no-readme)
  limit=1200  # three cold CPU compiles on a busy 2-core machine
else
  args=(--device cuda --mc-budget-s 150 --out "$ROOT/benchmarks/results")
  limit=300
fi
say "measurements: benchmarks/suite/gpu_check.py ${args[*]}"
timeout "$limit" "$PY" benchmarks/suite/gpu_check.py --junit "$LOGS/gpu-tests.xml" "${args[@]}" \
  2>&1 | tee "$LOGS/measurements.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then status=1; fi
say "done: exit $status; logs in $LOGS"
exit $status
