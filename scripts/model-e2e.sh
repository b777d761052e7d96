#!/usr/bin/env bash
# The long real-model runs, too slow for every CI run:
#
#   scripts/model-e2e.sh [EVENTS]     enrich-service over EVENTS (200) review
#                                     events against a real Kafka and the real
#                                     model server, then verify with
#                                     -min-rate ${SLUICE_E2E_MODEL_MIN_RATE:-0.95}
#   scripts/model-e2e.sh compare [N]  the openai enricher on every task with
#                                     N (10) events per task in each output
#                                     mode (json_schema, json_object,
#                                     prompt_only): how much structured output
#                                     helps a small model
#   scripts/model-e2e.sh bench [N]    BenchmarkRealModel with N (40) events at
#                                     concurrency 1, 2 and 4
#
# Servers are started as scripts/test.sh does (scripts/kafka.sh,
# scripts/model.sh) unless KAFKA_BROKERS / SLUICE_MODEL_URL are set, and the
# ones started here are stopped on exit (SLUICE_KEEP_SERVERS=1 keeps them).
# The test output (with the shares, rates and latencies) is printed in full.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLUICE_ROOT"
trap 'sluice_stop_servers' EXIT
sluice_go_env

mode=${1:-e2e}
case $mode in
  compare)
    n=${2:-10}
    sluice_start_model
    SLUICE_REAL_MODEL_EVENTS=$n SLUICE_REAL_MODEL_MODES=json_schema,json_object,prompt_only \
      go test -count=1 -v -timeout 2h -run '^TestRealModel$' ./openai
    ;;
  bench)
    n=${2:-40}
    sluice_start_model
    go test -count=1 -run '^$' -bench '^BenchmarkRealModel$' -benchtime "${n}x" -timeout 2h ./openai
    ;;
  *)
    n=$mode
    [[ $n == e2e ]] && n=200
    [[ $n =~ ^[1-9][0-9]*$ ]] || {
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
      exit 2
    }
    sluice_start_servers
    sluice_start_model
    SLUICE_E2E_MODEL_EVENTS=$n SLUICE_E2E_MODEL_MIN_RATE=${SLUICE_E2E_MODEL_MIN_RATE:-0.95} go test -count=1 -v -timeout 2h -run '^TestEnrichServiceRealModel$' ./examples/e2e
    ;;
esac
