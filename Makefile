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

.PHONY: run test sim tables check-tables mpy clean

$(BIN)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(BIN)/.installed

# The main job: the firmware on the unix port completes a charging session
# against the bundled dev CSMS and the simulated meter.
run: $(BIN)/.installed
	$(BIN)/python tools/demo.py

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q host_tests

# Charge point simulator against any CSMS; commands on standard input.
SIMFLAGS := $(if $(CA),--ca $(CA)) $(if $(FRAMES),--frames)
sim: $(BIN)/.installed
	mkdir -p $(DATA)
	MICROPYPATH=$(MPYPATH) $(MPY) firmware/main.py --board boards/$(BOARD) --data $(DATA) --csms $(CSMS) --cp $(CP) $(SIMFLAGS)

# Regenerate the payload check tables from the official schemas.
tables: $(BIN)/.installed
	$(BIN)/python tools/gen_tables.py

check-tables: $(BIN)/.installed
	$(BIN)/python tools/gen_tables.py --check

# Compile firmware/ and lib/ to .mpy for a board architecture (ARCH=xtensawin|armv6m).
ARCH ?= xtensawin
mpy: $(BIN)/.installed
	$(BIN)/python tools/build_mpy.py --arch $(ARCH) -v

clean:
	rm -rf build data
