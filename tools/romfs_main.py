# The firmware run from a ROMFS image on the MicroPython unix port (for
# tools/bench.py): the .mpy bytecode executes in place, as it does from frozen
# modules or a ROM partition on a board, instead of being copied into the heap.
#   ROMFS_IMAGE=build/bench/romfs.img micropython tools/romfs_main.py --board ...
# The unix port has no ROM partition, so the image is read into one bytearray
# on the heap; the bench subtracts its size from the heap it measures.
import os
import sys
import vfs

with open(os.getenv("ROMFS_IMAGE"), "rb") as f:
    image = bytearray(f.seek(0, 2))
    f.seek(0)
    f.readinto(image)
vfs.mount(vfs.VfsRom(image), "/rom")
sys.path[:] = ["/rom", ".frozen"]
import app  # noqa: E402

app.main()
