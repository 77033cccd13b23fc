# Frozen modules for a MicroPython unix-port binary with mpocpp built in, for a
# Linux controller (README, "Flashing a board"), from the MicroPython source tree:
#   cd ports/unix
#   make FROZEN_MANIFEST=/abs/path/to/mpocpp/boards/linux/manifest.py
# (cross-compile for an ARM controller with CROSS_COMPILE=... as the unix port's
# README describes). Paths are relative to this file. main.py stays a file:
#   micropython main.py --board /etc/mpocpp --data /var/lib/mpocpp

# What the standard unix variant freezes (asyncio and friends).
include("$(PORT_DIR)/variants/standard/manifest.py")

import os

# The simulator's front panel and simulated hardware are not needed here.
SKIP = ("main.py", "hw/sim.py", "hw/console.py")

for base in ("../../firmware", "../../lib"):
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if name.endswith(".py") and name not in SKIP:
            module(name, base_path=base)
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            files = sorted(os.path.relpath(os.path.join(d, f), path)
                           for d, _, fs in os.walk(path) for f in fs if f.endswith(".py"))
            package(name, files=[f for f in files if name + "/" + f not in SKIP], base_path=base)
