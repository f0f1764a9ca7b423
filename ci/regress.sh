#!/usr/bin/env bash
# Runs a scenario and compares it with a baseline, as the nightly workflow
# (ci/workflows/regression.yml) does. `make regress` calls it.
#
#   ci/regress.sh [SCENARIO [OUT]]
#
# Environment (arguments win):
#   SCENARIO   scenario file            (default scenarios/default.yaml)
#   OUT        output directory          (default results/regress-<time>)
#   BASELINE   baseline results file     (default ci/baselines/default.json)
#   MAKE       make command              (default make)
#
# Exit status: 0 no regression; 1 regression or failed run; 2 usage;
# 3 no baseline to compare with (the run and its report are still made).
set -euo pipefail

cd "$(dirname "$0")/.."

if (($# > 2)); then
	sed -n '2,13p' "$0" >&2
	exit 2
fi
SCENARIO=${1:-${SCENARIO:-scenarios/default.yaml}}
OUT=${2:-${OUT:-results/regress-$(date +%Y%m%d-%H%M%S)}}
BASELINE=${BASELINE:-ci/baselines/default.json}
MAKE=${MAKE:-make}

if [[ ! -f "$SCENARIO" ]]; then
	echo "regress: no scenario file $SCENARIO" >&2
	exit 2
fi

echo "regress: running $SCENARIO into $OUT"
# make bench builds bin/meshbench, runs the scenario and writes the report.
if ! "$MAKE" bench SCENARIO="$SCENARIO" OUT="$OUT"; then
	echo "regress: the benchmark run failed; what it measured is in $OUT" >&2
	exit 1
fi

if [[ ! -f "$BASELINE" ]]; then
	echo "regress: no baseline at $BASELINE: nothing to compare with." >&2
	echo "regress: the run is in $OUT; see ci/baselines/README.md to make a baseline (make baseline)." >&2
	exit 3
fi

meshbench=bin/meshbench
if [[ ! -x "$meshbench" ]]; then
	meshbench="go run ./cmd/meshbench"
fi
echo "regress: comparing $BASELINE with $OUT/results.json"
status=0
$meshbench compare "$BASELINE" "$OUT/results.json" --markdown "$OUT/compare.md" || status=$?
echo "regress: report in $OUT/report.html, comparison in $OUT/compare.md"
if ((status != 0)); then
	echo "regress: REGRESSION (or compare failed, status $status)" >&2
	exit 1
fi
echo "regress: no regression"
