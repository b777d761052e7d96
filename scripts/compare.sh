# shellcheck shell=bash
# scripts/bench.sh compare: the hand-written client loops against Sluice with
# its defaults, on the real Kafka and Redis, in one invocation. Sourced by
# scripts/bench.sh once the servers are up (KAFKA_BROKERS and REDIS_ADDR set).

# sluice_bench BINARY DIR PATTERN BENCHTIME [ENV...]: runs one benchmark
# binary in DIR and appends "name metric value" lines to $SLUICE_RESULTS.
sluice_bench() {
  local bin=$1 dir=$2 pat=$3 n=$4
  shift 4
  local out
  out=$(cd "$dir" && env "$@" "$bin" -test.run='^$' -test.bench="$pat" -test.benchtime="$n" 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
  printf '%s\n' "$out" | grep '^Benchmark' >&2 || true
  printf '%s\n' "$out" | awk -v r="$SLUICE_ROUND" '/^Benchmark/ {
      name = $1; sub(/-[0-9]+$/, "", name)
      for (i = 3; i + 1 <= NF; i += 2) print name, $(i + 1), $i, r
    }' >>"$SLUICE_RESULTS"
}

# sluice_ratio A B METRIC: the median over rounds of B's value divided by
# A's in the same round (runs of one round are side by side, so their ratio
# is steadier than the ratio of medians when the machine's load changes).
sluice_ratio() {
  awk -v a="$1" -v b="$2" -v m="$3" '$2 == m && $1 == a { va[$4] = $3 } $2 == m && $1 == b { vb[$4] = $3 }
    END { for (r in va) if (r in vb && va[r] > 0) print vb[r] / va[r] }' "$SLUICE_RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# sluice_ratios A B METRIC: every round's ratio, in round order.
sluice_ratios() {
  awk -v a="$1" -v b="$2" -v m="$3" '$2 == m && $1 == a { va[$4] = $3 } $2 == m && $1 == b { vb[$4] = $3 }
    END { for (r = 1; r in va; r++) if (r in vb && va[r] > 0) printf "%s%.2f", (r > 1 ? " " : ""), vb[r] / va[r] }' "$SLUICE_RESULTS"
}

# sluice_median NAME METRIC: the median of the values recorded.
sluice_median() {
  awk -v n="$1" -v m="$2" '$1 == n && $2 == m { print $3 }' "$SLUICE_RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

sluice_compare() {
  local runs=${SLUICE_COMPARE_RUNS:-5}
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'; sluice_stop_servers" EXIT
  SLUICE_RESULTS=$tmp/results
  : >"$SLUICE_RESULTS"
  sluice_log "building the benchmark binaries"
  go test -c -o "$tmp/kafka.test" ./kafka
  go test -c -o "$tmp/redis.test" ./redisstream

  # A warm-up pass, not counted: a broker that has just started (a JVM
  # compiling its hot paths) runs the first rounds at half speed, and
  # whichever side went first would pay for it.
  sluice_log "warming up the brokers (not counted)"
  SLUICE_RESULTS=$tmp/warmup SLUICE_ROUND=0
  sluice_bench "$tmp/kafka.test" kafka 'KafkaThroughput/(sarama-loop|defaults)$' 100000x
  sluice_bench "$tmp/redis.test" redisstream 'PassThrough/(HandLoop|SluiceDefaults)$' 50000x
  SLUICE_RESULTS=$tmp/results

  local r rate
  for ((r = 1; r <= runs; r++)); do
    sluice_log "round $r of $runs"
    SLUICE_ROUND=$r
    # The loop and Sluice swap places every round, so that neither always
    # runs on the broker's first (or second) fresh topic of the round.
    if ((r % 2)); then
      sluice_bench "$tmp/kafka.test" kafka 'KafkaThroughput/sarama-loop$' 200000x
      sluice_bench "$tmp/kafka.test" kafka 'KafkaThroughput/defaults$' 200000x
      sluice_bench "$tmp/redis.test" redisstream 'PassThrough/HandLoop$' 100000x
      sluice_bench "$tmp/redis.test" redisstream 'PassThrough/SluiceDefaults$' 100000x
    else
      sluice_bench "$tmp/kafka.test" kafka 'KafkaThroughput/defaults$' 200000x
      sluice_bench "$tmp/kafka.test" kafka 'KafkaThroughput/sarama-loop$' 200000x
      sluice_bench "$tmp/redis.test" redisstream 'PassThrough/SluiceDefaults$' 100000x
      sluice_bench "$tmp/redis.test" redisstream 'PassThrough/HandLoop$' 100000x
    fi
    sluice_bench "$tmp/kafka.test" kafka 'KafkaModel/' 50000x
    # Latency at half of the load this round measured with the 5ms model.
    rate=$(awk '$1 == "BenchmarkKafkaModel/5ms/defaults" && $2 == "events/s" { v = $3 } END { printf "%d", v / 2 }' "$SLUICE_RESULTS")
    sluice_bench "$tmp/kafka.test" kafka 'KafkaLatencyModel$' 8000x SLUICE_LATENCY_RATE="$rate"
    sluice_bench "$tmp/redis.test" redisstream 'RedisLatencyModel$' 8000x SLUICE_LATENCY_RATE="$rate"
    sluice_bench "$tmp/kafka.test" kafka 'KafkaMemory$' 1x
  done

  local kl kd rl rd ml md m5 bound kr rr mr
  kl=$(sluice_median BenchmarkKafkaThroughput/sarama-loop events/s)
  kd=$(sluice_median BenchmarkKafkaThroughput/defaults events/s)
  rl=$(sluice_median BenchmarkPassThrough/HandLoop events/s)
  rd=$(sluice_median BenchmarkPassThrough/SluiceDefaults events/s)
  ml=$(sluice_median BenchmarkKafkaModel/20ms-c256/sarama-loop events/s)
  md=$(sluice_median BenchmarkKafkaModel/20ms-c256/defaults events/s)
  m5=$(sluice_median BenchmarkKafkaModel/5ms/defaults events/s)
  kr=$(sluice_ratio BenchmarkKafkaThroughput/sarama-loop BenchmarkKafkaThroughput/defaults events/s)
  rr=$(sluice_ratio BenchmarkPassThrough/HandLoop BenchmarkPassThrough/SluiceDefaults events/s)
  mr=$(sluice_ratio BenchmarkKafkaModel/20ms-c256/sarama-loop BenchmarkKafkaModel/20ms-c256/defaults events/s)
  bound=12800
  echo
  echo "Medians of $runs interleaved runs ($(nproc) cores). Ratios, the result, are the medians of each round's"
  echo "Sluice/loop ratio (the loop and Sluice run side by side in every round)."
  echo
  awk -v kl="$kl" -v kd="$kd" -v rl="$rl" -v rd="$rd" -v ml="$ml" -v md="$md" -v b="$bound" \
    -v kr="$kr" -v rr="$rr" -v mr="$mr" \
    -v kcl="$(sluice_median BenchmarkKafkaThroughput/sarama-loop cpu-ns/event)" \
    -v kcd="$(sluice_median BenchmarkKafkaThroughput/defaults cpu-ns/event)" \
    -v mlm="$(sluice_median BenchmarkKafkaModel/20ms-c256/sarama-loop littles-measured-%)" \
    -v mdm="$(sluice_median BenchmarkKafkaModel/20ms-c256/defaults littles-measured-%)" 'BEGIN {
    print "| case | raw client loop | Sluice, defaults | ratio |"
    print "| --- | --- | --- | --- |"
    printf "| Kafka pass-through, 200,000 events | %.0f ev/s | %.0f ev/s | **%.2fx** |\n", kl, kd, kr
    printf "| the same, CPU time per event in the client process | %.1f µs | %.1f µs | %.2fx |\n", kcl / 1000, kcd / 1000, kcd / kcl
    printf "| Redis pass-through, 100,000 events | %.0f ev/s | %.0f ev/s | **%.2fx** |\n", rl, rd, rr
    printf "| Kafka, 20 ms model, 256 in flight | %.0f ev/s (%.1f %% of %d) | %.0f ev/s (**%.1f %%** of %d) | %.2fx |\n", ml, 100 * ml / b, b, md, 100 * md / b, b, mr
    printf "| the same against the latency each call really took | %.1f %% | **%.1f %%** | |\n", mlm, mdm
  }'
  echo
  awk -v m5="$m5" \
    -v kp50="$(sluice_median BenchmarkKafkaLatencyModel p50-ms)" -v kp99="$(sluice_median BenchmarkKafkaLatencyModel p99-ms)" \
    -v rp50="$(sluice_median BenchmarkRedisLatencyModel p50-ms)" -v rp99="$(sluice_median BenchmarkRedisLatencyModel p99-ms)" \
    -v load="$(sluice_median BenchmarkKafkaLatencyModel load-ev/s)" \
    -v rss="$(sluice_median BenchmarkKafkaMemory rss-MB)" -v heap="$(sluice_median BenchmarkKafkaMemory heap-MB)" \
    -v inf="$(sluice_median BenchmarkKafkaMemory in-flight)" \
    -v kpk="$(sluice_median BenchmarkKafkaThroughput/defaults peak-in-flight)" \
    -v rpk="$(sluice_median BenchmarkPassThrough/SluiceDefaults peak-in-flight)" 'BEGIN {
    print "| figure | value |"
    print "| --- | --- |"
    printf "| 5 ms model, defaults (8 calls at once): maximum load | %.0f ev/s (%.1f %% of 1600) |\n", m5, 100 * m5 / 1600
    printf "| end-to-end latency at %.0f ev/s, 5 ms model, Kafka (p50 / p99) | %.1f ms / **%.1f ms** |\n", load, kp50, kp99
    printf "| end-to-end latency at %.0f ev/s, 5 ms model, Redis (p50 / p99) | %.1f ms / **%.1f ms** |\n", load, rp50, rp99
    printf "| resident memory, 200,000-event Kafka backlog, 60 s model | **%.1f MB** RSS (Go heap %.1f MB, %d events in flight) |\n", rss, heap, inf
    printf "| most events in flight, Kafka pass-through (redelivered at most by a rebalance; a crash adds one commit interval of acked events) | %d |\n", kpk
    printf "| most events in flight, Redis pass-through (left pending by a crash) | %d |\n", rpk
  }'
  echo
  echo "Each round's ratio, in round order (a single round varies by 10-20 % on a shared machine):"
  echo "Kafka pass-through $(sluice_ratios BenchmarkKafkaThroughput/sarama-loop BenchmarkKafkaThroughput/defaults events/s);" \
    "Redis pass-through $(sluice_ratios BenchmarkPassThrough/HandLoop BenchmarkPassThrough/SluiceDefaults events/s)."
}
