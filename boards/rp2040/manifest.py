# Frozen modules for a Raspberry Pi Pico W MicroPython firmware with mpocpp
# built in (README, "Flashing a board"), from the MicroPython source tree:
#   cd ports/rp2
#   make BOARD=RPI_PICO_W FROZEN_MANIFEST=/abs/path/to/mpocpp/boards/rp2040/manifest.py
# Paths are relative to this file. main.py and board.json are NOT frozen: they
# stay files on the flash (copied by `make deploy`), so a board's wiring can be
# changed without rebuilding. tools/deploy.py reads this manifest too, to know
# which modules belong on the board.

# What the Pico W board freezes by default (the port's modules, asyncio, and the
# networking bundle with ntptime).
include("$(BOARD_DIR)/manifest.py")

import os

# Modules of firmware/ and lib/ that only the unix port uses.
SKIP = ("main.py", "hw/sim.py", "hw/console.py", "hw/unixflash.py", "hw/serial_unix.py", "hw/linux_gpio.py")

for base in ("../../firmware", "../../lib"):
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if name.endswith(".py") and name not in SKIP:
            module(name, base_path=base)
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            files = sorted(os.path.relpath(os.path.join(d, f), path)
                           for d, _, fs in os.walk(path) for f in fs if f.endswith(".py"))
            package(name, files=[f for f in files if name + "/" + f not in SKIP], base_path=base)
