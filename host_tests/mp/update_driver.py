# Test driver for host_tests/test_slots.py: a station's flash (its --data
# directory), updated the way the OCPP UpdateFirmware handler will do it.
#   micropython host_tests/mp/update_driver.py DATA COMMAND...
#   receive FILE [CHUNK]  FILE (host) -> the download path, through a Checker, as a download
#   put FILE              FILE -> the download path, unchecked (a file damaged on the flash)
#   room SIZE             update.make_room(SIZE)
#   tight FILE            FILE through a Checker with just its own size of room
#   install [SECS]        install the download, trial time SECS
#   state                 the boot stage's state and outcome()
#   clear                 clear_outcome()
# Each prints one line per command: "ok ..." or "refused: <why>".
import sys
import asyncio
from hw import unixflash
import slots
import trial

slots.root = unixflash.mount(sys.argv[1])
import update

args = sys.argv[2:]
while args:
    cmd = args.pop(0)
    try:
        if cmd in ("receive", "put"):
            src = args.pop(0)
            chunk = int(args.pop(0)) if cmd == "receive" and args and args[0].isdigit() else 700
            with open(src, "rb") as f:
                data = f.read()
            room = update.make_room(len(data))
            c = update.Checker(room) if cmd == "receive" else None
            with open(update.download_path(), "wb") as out:
                for i in range(0, len(data), chunk):
                    piece = memoryview(data)[i:i + chunk]
                    if c:
                        c.feed(piece)
                    out.write(piece)
            print("ok", c.finish() if c else len(data))
        elif cmd == "room":
            print("ok", update.make_room(int(args.pop(0))))
        elif cmd == "tight":  # a Checker told there is no more room than the file's own size
            with open(args.pop(0), "rb") as f:
                data = f.read()
            update.Checker(len(data)).feed(data)
            print("ok")
        elif cmd == "install":
            secs = int(args.pop(0)) if args and args[0].isdigit() else trial.TRIAL_S
            print("ok", asyncio.run(update.install(update.download_path(), secs)))
        elif cmd == "state":
            print("ok", sorted(trial.state().items()), slots.outcome())
        elif cmd == "clear":
            slots.clear_outcome()
            print("ok")
    except update.UpdateError as e:
        print("refused:", e)
