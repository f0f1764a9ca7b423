#!/usr/bin/env bash
# Runs a scenario and compares it with the last good run on this machine,
# as the nightly workflow (ci/workflows/regression.yml) does. `make
# regress` calls it. See ci/baselines/README.md.
#
#   ci/regress.sh [SCENARIO [OUT]]
#
# Environment (arguments win):
#   SCENARIO      scenario file              (default scenarios/nightly.yaml)
#   OUT           output directory           (default results/regress-<time>)
#   BASELINE_DIR  where the last good run is kept
#                 (default results/baseline/<hostname>: never another machine's)
#   BASELINE      baseline results file      (default $BASELINE_DIR/results.json)
#   PROMOTE_TO    where a good run is copied as the next baseline
#                 (default $BASELINE; empty: never)
#   ACCEPT        1: promote the run even if it regressed (an intended change)
#   STRICT_ENV    1: fail when the machines or scenarios differ
#   COMPARE_ARGS  more flags for meshbench compare (for example --alpha 0.1)
#   MAKE          make command               (default make)
#
# A good run is one whose status is ok and that did not regress (or was
# accepted); it becomes the baseline of the next run.
#
# Exit status: 0 no regression; 1 regression or failed run; 2 usage;
# 3 no baseline to compare with (the run, if good, became the baseline);
# 4 the environments differ and STRICT_ENV=1.
set -euo pipefail

cd "$(dirname "$0")/.."

if (($# > 2)); then
	sed -n '2,25p' "$0" >&2
	exit 2
fi
SCENARIO=${1:-${SCENARIO:-scenarios/nightly.yaml}}
OUT=${2:-${OUT:-results/regress-$(date +%Y%m%d-%H%M%S)}}
BASELINE_DIR=${BASELINE_DIR:-results/baseline/$(hostname -s 2>/dev/null || hostname)}
BASELINE=${BASELINE:-$BASELINE_DIR/results.json}
PROMOTE_TO=${PROMOTE_TO-$BASELINE}
ACCEPT=${ACCEPT:-0}
STRICT_ENV=${STRICT_ENV:-0}
MAKE=${MAKE:-make}

if [[ ! -f "$SCENARIO" ]]; then
	echo "regress: no scenario file $SCENARIO" >&2
	exit 2
fi

# promote copies the run to PROMOTE_TO when its status is ok.
promote() {
	if [[ -z "$PROMOTE_TO" ]]; then
		return
	fi
	if ! grep -q -m1 '^  "status": "ok"' "$OUT/results.json"; then
		echo "regress: the run's status is not ok: not kept as a baseline" >&2
		return
	fi
	mkdir -p "$(dirname "$PROMOTE_TO")"
	cp "$OUT/results.json" "$PROMOTE_TO.tmp" && mv "$PROMOTE_TO.tmp" "$PROMOTE_TO"
	echo "regress: this run is the baseline from now on: $PROMOTE_TO"
}

echo "regress: running $SCENARIO into $OUT"
# make bench builds bin/meshbench, runs the scenario and writes the report.
if ! "$MAKE" bench SCENARIO="$SCENARIO" OUT="$OUT"; then
	echo "regress: the benchmark run failed; what it measured is in $OUT" >&2
	exit 1
fi

if [[ ! -f "$BASELINE" ]]; then
	echo "regress: no baseline at $BASELINE: nothing to compare with (first run on this machine, or the last good run expired)." >&2
	promote
	exit 3
fi

meshbench=bin/meshbench
if [[ ! -x "$meshbench" ]]; then
	# Built, not `go run`: go run turns every exit status into 1.
	go build -o "$meshbench" ./cmd/meshbench
fi
strict=()
if [[ "$STRICT_ENV" == 1 ]]; then
	strict=(--strict-env)
fi
echo "regress: comparing $BASELINE with $OUT/results.json"
status=0
# shellcheck disable=SC2086 # COMPARE_ARGS is a list of flags
"$meshbench" compare "$BASELINE" "$OUT/results.json" --markdown "$OUT/compare.md" "${strict[@]}" ${COMPARE_ARGS:-} || status=$?
echo "regress: report in $OUT/report.html, comparison in $OUT/compare.md"
case $status in
0)
	echo "regress: no regression"
	promote
	;;
3)
	if [[ "$ACCEPT" == 1 ]]; then
		echo "regress: the environments differ (STRICT_ENV=1), accepted (ACCEPT=1)" >&2
		promote
		exit 0
	fi
	echo "regress: the environments differ (STRICT_ENV=1); the baseline is kept" >&2
	exit 4
	;;
*)
	if [[ "$ACCEPT" == 1 ]]; then
		echo "regress: REGRESSION (or compare failed, status $status), accepted (ACCEPT=1)" >&2
		promote
		exit 0
	fi
	echo "regress: REGRESSION (or compare failed, status $status); the baseline is kept" >&2
	exit 1
	;;
esac
