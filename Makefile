# Host-side entry points. Everything installs itself into .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
MPY     := $(BIN)/micropython
MPYPATH := firmware:lib:.frozen
BOARD   ?= unix
CSMS    ?= ws://127.0.0.1:9000
CP      ?= CP001
DATA    ?= data/$(CP)

.PHONY: run test sim tables check-tables mpy bench clean firmware bundle

$(BIN)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(BIN)/.installed

# The main job: the firmware on the unix port completes a charging session
# against the bundled dev CSMS and the simulated meter (OCPP 1.6; OCPP=2.0.1: the
# REON station's OCPP 2.0.1 session, tools/demo.py --ocpp 2.0.1).
run: $(BIN)/.installed
	$(BIN)/python tools/demo.py $(if $(OCPP),--ocpp $(call shq,$(OCPP)))

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q host_tests

# Charge point simulator against any CSMS; commands on standard input.
# CA=<file> (PEM bundle or DER): the CentralSystemRootCertificate(s) put in the store on the
# first start of DATA (then the store is what counts); the CSMS URL's scheme is kept.
# OCPP=2.0.1 (or 1.6, or 2.0.1,1.6: offered in that order, the CSMS picks): the station's
# OcppVersion, as a board default in build/boards/$(BOARD)-ocpp/board.json; a value stored
# in DATA before (console `set OcppVersion ...`) wins over it, as any stored setting does.
SIMFLAGS := $(if $(CA),--ca $(CA)) $(if $(FRAMES),--frames)
SIMBOARD := $(if $(OCPP),build/boards/$(BOARD)-ocpp,boards/$(BOARD))
sim: $(BIN)/.installed
	mkdir -p $(DATA)
	$(if $(OCPP),$(BIN)/python tools/board_config.py boards/$(BOARD) $(SIMBOARD) --ocpp $(call shq,$(OCPP)) >/dev/null)
	MICROPYPATH=$(MPYPATH) tools/unix_loop.sh $(MPY) firmware/main.py --board $(SIMBOARD) --data $(DATA) --csms $(CSMS) --cp $(CP) $(SIMFLAGS)

# Regenerate the payload check tables from the official schemas (OCPP 1.6 and 2.0.1:
# firmware/ocpp/v16/tables.py, firmware/ocpp/v201/tables.py; --proto v16|v201 for one).
tables: $(BIN)/.installed
	$(BIN)/python tools/gen_tables.py

check-tables: $(BIN)/.installed
	$(BIN)/python tools/gen_tables.py --check

# Compile firmware/ and lib/ to .mpy for a board architecture (ARCH=xtensawin|armv6m).
ARCH ?= xtensawin
mpy: $(BIN)/.installed
	$(BIN)/python tools/build_mpy.py --arch $(ARCH) -v

# A MicroPython unix port with boards/$(BOARD)/manifest.py frozen in (README, Freezing):
#   make firmware [BOARD=unix|linux] [ARCH=x86|x64] [TLS_HEAP=1] [MPY_SRC=<source tree or .tar.xz>]
# ARCH=x86 (the default here) is 32-bit, as the boards are; TLS_HEAP=1 puts mbedTLS in the
# MicroPython heap (as on an RP2040). Without MPY_SRC: ../shared/toolchain/micropython-src.tar.xz.
# -> build/firmware/<board>-<arch>[-tls]/micropython, cached until the source or a frozen file changes.
FW_ARCH := $(if $(filter command line environment,$(origin ARCH)),$(ARCH),x86)
firmware: $(BIN)/.installed
	$(BIN)/python tools/build_firmware.py --board $(BOARD) --arch $(FW_ARCH) $(if $(TLS_HEAP),--tls-heap) $(if $(MPY_SRC),--src $(call shq,$(MPY_SRC)))

# An update file of the application for a board (README, "Updating the firmware"):
#   make bundle VERSION=<v> [OUT=<file>] [BOARD=unix|linux|esp32|rp2040] [ARCH=<mpy-cross -march>]
#   make bundle VERSION=<v> IMAGE=<micropython.bin> [OUT=<file>]   (an ESP32 OTA image)
# The board's modules compiled for its CPU, the version, a SHA-256 over it all; offline, in seconds.
bundle: $(BIN)/.installed
	$(if $(VERSION),,$(error make bundle needs VERSION=<version>, e.g. make bundle VERSION=1.2.0))
	$(BIN)/python tools/bundle.py --version $(call shq,$(VERSION)) --board $(BOARD) $(if $(OUT),--out $(call shq,$(OUT))) $(if $(IMAGE),--image $(call shq,$(IMAGE))) $(if $(filter command line environment,$(origin ARCH)),--arch $(ARCH))

# Performance budget figures (issues #6, #10), all from one run: smallest heap for the full
# session on the 32-bit frozen build over ws:// and wss:// (when a MicroPython source is
# there: MPY_SRC or ../shared/toolchain/micropython-src.tar.xz), on the 64-bit port (.mpy
# and source), live heap, code size per board architecture, answer times against a charge
# point on the ocpp library, loop stall, boot time. Prints one table, writes the same
# figures to build/bench.json. Takes about 4 minutes (plus the first firmware builds).
# The crypto figures (issue #13) come after: P-256 / RSA, X.509 and CSR, signed updates.
bench: $(BIN)/.installed
	$(if $(MPY_SRC),MPY_SRC=$(call shq,$(MPY_SRC)) )$(BIN)/python tools/bench.py
	$(BIN)/python tools/bench_crypto.py
	$(BIN)/python tools/bench_x509.py
	$(BIN)/python tools/bench_signed.py

clean:
	rm -rf build data

# ---- Boards (README, "Flashing a board" and "Configuring on site over the REPL") ----
.PHONY: compile deploy configure
# shell-quotes a make variable's value
shq = '$(subst ','\'',$(1))'

# Compile firmware/ and lib/ for every board architecture: ESP32 (xtensawin), RP2040 (armv6m).
compile: $(BIN)/.installed
	$(BIN)/python tools/build_mpy.py --arch xtensawin
	$(BIN)/python tools/build_mpy.py --arch armv6m

# Copy the firmware to a board over its USB serial REPL:
#   make deploy BOARD=esp32 PORT=/dev/ttyUSB0      (BOARD=rp2040 PORT=/dev/ttyACM0 for a Pico W)
#   DRY_RUN=1: stage build/deploy/<board>/ and print the mpremote command only; NO_RESET=1: stay at the REPL
deploy: $(BIN)/.installed
	$(BIN)/python tools/deploy.py --board $(BOARD) $(if $(PORT),--port $(call shq,$(PORT))) $(if $(DRY_RUN),--dry-run) $(if $(NO_RESET),--no-reset)

# Set one configuration key on a board (cfg.set over mpremote), then restart it:
#   make configure PORT=/dev/ttyUSB0 KEY=CsmsUrl VALUE=wss://csms.example.com/ocpp
# Without KEY: print every key and value (secrets hidden).
configure: $(BIN)/.installed
	$(BIN)/python tools/deploy.py $(if $(PORT),--port $(call shq,$(PORT))) $(if $(KEY),--set $(call shq,$(KEY)) $(call shq,$(VALUE)),--show) $(if $(DRY_RUN),--dry-run) $(if $(NO_RESET),--no-reset)

# Fault injection soak: many charging sessions under kills, flash power cuts,
# CSMS restarts and broken links, and the CSMS's operations (firmware update,
# charging profile, certificate, log upload) with faults of their own
# (host_tests/test_fault_injection.py, host_tests/soak_ops.py), in SHARDS parallel
# processes, each its own seed, CSMS, proxy and DATA dir; one combined report
# (host_tests/soak.py; shard logs and report in build/soak/).
# FAULT_SESSIONS=N sessions in all, FAULT_SEED=S the first shard's seed (shard i: S+i);
# replay one shard: make soak SHARDS=1 FAULT_SESSIONS=<its n> FAULT_SEED=<its seed>.
.PHONY: soak
FAULT_SESSIONS ?= 900
SHARDS ?= 6
soak: $(BIN)/.installed
	$(BIN)/python host_tests/soak.py --sessions $(FAULT_SESSIONS) --shards $(SHARDS) $(if $(FAULT_SEED),--seed $(FAULT_SEED))

# The fuzzer at scale (host_tests/fuzzing.py): hostile frames of every action of OCPP 1.6
# (with the security extension) and 2.0.1, each seed over both protocols, JOBS shards in
# parallel processes (each its own seed, protocol, CSMS and firmware); one combined report
# (also build/fuzz.txt, build/fuzz.json) with each shard's replay command:
#   make fuzz [SEEDS=10] [SEED=20261123 (the first)] [EXAMPLES=5000 (per shard)] [JOBS=2] [OCPP=1.6,2.0.1]
# The defaults fuzz over 100,000 frames. `make test` runs a short version (test_fuzz.py).
.PHONY: fuzz
SEEDS    ?= 10
SEED     ?= 20261123
EXAMPLES ?= 5000
JOBS     ?= 2
fuzz: $(BIN)/.installed
	$(BIN)/python host_tests/fuzzing.py --seeds $(SEEDS) --seed $(SEED) --examples $(EXAMPLES) --jobs $(JOBS) --ocpp $(if $(OCPP),$(call shq,$(OCPP)),1.6,2.0.1)
