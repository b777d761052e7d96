#!/usr/bin/env bash
# scripts/eos-soak.sh: the exactly-once proof runs of enrich-service
# -exactly-once on a real broker, read back by a read_committed consumer:
#
#   - three SIGKILLs during a 6,000-event run (also part of the default
#     test run, about 40 s);
#   - the same kills without -exactly-once, as the baseline (duplicates
#     logged);
#   - three instances joining, one leaving with SIGTERM and one killed and
#     restarted, over 6,000 events (about 2 minutes, so only here).
#
# Both must report 0 missing and 0 duplicates. It also runs the kafka
# package's transactional tests (the zombie-fencing test included).
#
# Usage: KAFKA_BROKERS=127.0.0.1:9092 scripts/eos-soak.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KAFKA_BROKERS:?set KAFKA_BROKERS to a Kafka 4.x broker (scripts/kafka.sh start)}"
rounds="${1:-1}"
for ((i = 1; i <= rounds; i++)); do
  echo "eos-soak: round $i of $rounds"
  SLUICE_E2E_LONG=1 go test -count=1 -v -run 'TestExactlyOnce|TestSIGKILLKafkaAtLeastOnce' ./examples/e2e | grep -E '^(---|ok|FAIL|PASS)|verify|SIGKILL|instances|at least once'
  go test -count=1 -run 'TestKafkaTxn' ./kafka
done
