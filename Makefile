# Thin wrappers around scripts/; scripts/test.sh is the one test command.
SHELL := /usr/bin/env bash
GOFLAGS ?= -buildvcs=false
export GOFLAGS
STATICCHECK_VERSION := v0.8.2
# Every module of the repository: the root and each go.mod below it.
MODULES := . $(patsubst ./%/go.mod,%,$(shell find . -mindepth 2 -name go.mod -not -path './.git/*' -not -path '*/testdata/*' | sort))

.PHONY: test bench fuzz lint kafka-start kafka-stop kafka-status redis-start redis-stop redis-status model-start model-stop model-status model-e2e servers-start servers-stop

# Extra go test arguments: make test ARGS='-run TestX ./kafka'
test:
	scripts/test.sh $(ARGS)

bench:
	scripts/bench.sh $(ARGS)

# Every fuzz target for a while: make fuzz ARGS='10m' (see docs/testing.md)
fuzz:
	scripts/fuzz.sh $(ARGS)

lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	@command -v staticcheck >/dev/null 2>&1 || [ -x "$$(go env GOPATH)/bin/staticcheck" ] || \
		go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@set -e; for mod in $(MODULES); do \
		echo "go vet ./... (module $$mod)"; go vet -C $$mod ./...; \
		echo "staticcheck ./... (module $$mod)"; (cd $$mod && PATH="$$PATH:$$(go env GOPATH)/bin" staticcheck ./...); \
	done

kafka-start:
	scripts/kafka.sh start

kafka-stop:
	scripts/kafka.sh stop

kafka-status:
	scripts/kafka.sh status

redis-start:
	scripts/redis.sh start

redis-stop:
	scripts/redis.sh stop

redis-status:
	scripts/redis.sh status

model-start:
	scripts/model.sh start

model-stop:
	scripts/model.sh stop

model-status:
	scripts/model.sh status

# The long real-model runs: make model-e2e ARGS='compare' (see scripts/model-e2e.sh)
model-e2e:
	scripts/model-e2e.sh $(ARGS)

servers-start: kafka-start redis-start

servers-stop: kafka-stop redis-stop
