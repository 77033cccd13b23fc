# Frozen modules for a MicroPython unix-port binary with the charge point
# simulator built in, from the MicroPython source tree:
#   cd ports/unix
#   make FROZEN_MANIFEST=/abs/path/to/mpocpp/boards/unix/manifest.py
# Paths are relative to this file. main.py stays a file:
#   micropython firmware/main.py --board boards/unix --data DIR --csms URL --cp ID

# What the standard unix variant freezes (asyncio and friends).
include("$(PORT_DIR)/variants/standard/manifest.py")

import os

SKIP = ("main.py",)

for base in ("../../firmware", "../../lib"):
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if name.endswith(".py") and name not in SKIP:
            module(name, base_path=base)
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            files = sorted(os.path.relpath(os.path.join(d, f), path)
                           for d, _, fs in os.walk(path) for f in fs if f.endswith(".py"))
            package(name, files=[f for f in files if name + "/" + f not in SKIP], base_path=base)
