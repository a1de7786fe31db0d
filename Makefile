# jobd. `make help` lists the targets.
SHELL   := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: help build test test-browser dashboard-screenshot chromium run demo bench bench-mutex bench-scheduler bench-replicas bench-profile bench-micro fuzz soak chaos lint redis clean

FUZZTIME  ?= 5m
SOAKTIME  ?= 10m
CHAOSTIME ?= 180s

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/jobd
	@echo "building bin/jobd (the first build downloads and compiles the dependencies: a minute or two)"
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/jobd ./cmd/jobd

redis: ## install redis-server if it is missing (tests start their own servers)
	@scripts/redis.sh install

lint: ## gofmt (must list nothing) and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt -l lists:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags browser ./cmd/jobd/

test: redis lint ## lint, then every test with -race against real redis-server processes
	$(GO) test -race -count=1 ./...

chromium: ## install Debian's chromium if it is missing (the browser test drives it)
	@command -v chromium >/dev/null 2>&1 || { \
	  hint="chromium is not installed and could not be installed here; install it, then run this again: sudo apt-get update && sudo apt-get install -y chromium"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else echo "$$hint" >&2; exit 1; fi; \
	  echo "installing chromium with apt-get" >&2; \
	  $$sudo apt-get update -qq >&2 && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 \
	    && command -v chromium >/dev/null 2>&1 || { echo "$$hint" >&2; exit 1; }; }

test-browser: redis chromium ## the dashboard in headless Chromium against two real replicas (build tag browser; CI runs it)
	$(GO) test -race -count=1 -tags browser -run '^TestDashboardBrowser$$' -v ./cmd/jobd/

dashboard-screenshot: redis chromium ## regenerate docs/dashboard.png with the browser test
	JOBD_SCREENSHOT=$(CURDIR)/docs/dashboard.png $(GO) test -count=1 -tags browser -run '^TestDashboardBrowser$$' -v ./cmd/jobd/

run: build ## run the daemon on jobs.example.yaml against a local Redis (a private one is started if none answers on 6379)
	scripts/redis.sh run bin/jobd --log-format text -c jobs.example.yaml run

demo: build ## a private Redis and three replicas: spread, shared locks, one replica killed (Ctrl-C stops it)
	scripts/demo.sh

bench: bench-mutex bench-scheduler ## every benchmark against the peers (bench/, its own module)

bench-mutex: redis ## jobd's mutex against redsync, redislock, rueidislock and raw SET NX, in one run: key=value lines
	cd bench && $(GO) run ./cmd/benchmutex

bench-scheduler: redis ## jobd against gocron v2 + bsm/redislock (3 replicas, 200 instances every second, 60 s each); jobd alone: 10,000 instances (validate, idle RSS), 1,000 due at once
	cd bench && $(GO) run ./cmd/benchsched

bench-replicas: redis ## jobd alone with 1, 2 and 3 replicas (200 instances every second, 15 s each, about a minute): Redis commands and round trips per run at each count
	cd bench && $(GO) run ./cmd/benchsched -scenario replicas

bench-profile: redis ## pprof of one jobd replica: CPU at 200 instances every second and with 1,000 due at once, heap and CPU idle with 10,000 instances; under bin/profiles/, with go tool pprof -top summaries
	rm -rf bin/profiles && mkdir -p bin/profiles
	cd bench && $(GO) run ./cmd/benchsched -scenario peers,idle,due -lib jobd -duration 40s -profile ../bin/profiles
	@for p in bin/profiles/*.cpu bin/profiles/*.heap; do \
	  echo "== $$p: flat"; $(GO) tool pprof -top -nodecount=20 bin/profiles/jobd $$p 2>/dev/null | sed 1,5d; \
	  echo "== $$p: cumulative"; $(GO) tool pprof -top -cum -nodecount=30 bin/profiles/jobd $$p 2>/dev/null | sed 1,5d; \
	done
	@echo "== where the CPU goes (each sample in its first matching category: bench/cmd/profcats)"
	@cd bench && $(GO) run ./cmd/profcats ../bin/profiles/jobd ../bin/profiles/*.cpu

bench-micro: redis ## the mutex's own Go benchmarks (round trips and commands per operation)
	$(GO) test -run '^$$' -bench . -benchmem ./internal/mutex/

fuzz: ## fuzz the schedule-file loader for FUZZTIME (default 5m; CI runs 30s)
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./internal/jobs/

soak: redis ## three replicas, ten jobs every second, for SOAKTIME (default 10m) on each topology (standalone, cluster, quorum): every tick exactly once
	JOBD_SOAK=$(SOAKTIME) $(GO) test -race -count=1 -timeout 0 -run '^TestExactlyOnce$$' -v ./internal/scheduler/ | grep -E '^(---|ok|FAIL)|ticks in the window'

chaos: redis ## 3 replicas behind fault proxies, CHAOSTIME (default 180s) of cuts, stalls, lost replies, SIGSTOP, kill -9, Redis crashes, reloads; full output in bin/chaos.log, JOBD_CHAOS_SEED=N replays
	mkdir -p bin && JOBD_CHAOS=$(CHAOSTIME) $(if $(JOBD_CHAOS_SEED),JOBD_CHAOS_SEED=$(JOBD_CHAOS_SEED)) $(GO) test -race -count=1 -timeout 0 -run '^TestChaos$$' -v ./cmd/jobd/ | tee bin/chaos.log | grep -E '^(---|ok|FAIL)|chaos '

clean: ## remove build output
	rm -rf bin
