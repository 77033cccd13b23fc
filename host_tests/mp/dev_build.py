# The board-file construction of the hardware ports (hw/build.py) on the unix
# port:  dev_build.py DIR READER_TTY MODEM_TTY
# DIR holds coil/fb/plug files and the watchdog FIFO; the ttys have the
# CPython PN532 and modem simulators on their other side.
import os
import sys
import json
import time
import asyncio
import dev_tty
from hw import build


async def main(d, reader_tty, modem_tty):
    board = {"connectors": [], "uarts": {"nfc": {"path": reader_tty, "baudrate": 115200},
                                         "gsm": {"path": modem_tty, "baudrate": 115200}}}
    ctx = build.Context(board, None)
    if os.getenv("DEV_TTY") == "own":  # else Context.uart() opens them: hw.serial_unix.Serial
        ctx.uarts["nfc"] = dev_tty.uart(reader_tty)
        ctx.uarts["gsm"] = dev_tty.uart(modem_tty)
    out = {}
    k = build.contactor(1, {"type": "pin", "pin": {"path": d + "/coil"}, "active": 1,
                            "feedback": {"path": d + "/fb"}, "feedback_active": 1}, ctx)
    out["coil_at_start"] = open(d + "/coil").read()
    k.close()
    out["coil_closed"] = open(d + "/coil").read()
    time.sleep_ms(250)
    out["contactor_ok"] = k.ok()
    k.open()
    p = build.plug(1, {"type": "pin", "pin": {"path": d + "/plug"}, "active": 0}, ctx)
    out["plugged"] = p.plugged()
    r = build.reader({"type": "pn532", "uart": "nfc", "connector": 1}, ctx)
    tag = None
    for _ in range(10):
        tag = await r.poll()
        if tag:
            break
        await asyncio.sleep_ms(20)
    out["tag"] = tag
    m = build.modem({"type": "at", "uart": "gsm"}, ctx)
    out["modem"] = await m.identify()
    w = build.watchdog({"timeout_ms": 8000, "device": d + "/watchdog"}, ctx)
    w.feed()
    w.stop()
    out["watchdog"] = w.kind
    out["none"] = [build.plug(1, None, ctx), build.reader(None, ctx), build.modem({}, ctx), build.watchdog(None, ctx)]
    errors = []
    for fn, arg in ((build.reader, {"type": "acr122"}), (build.modem, {"type": "qmi"})):
        try:
            fn(arg, ctx)
        except ValueError as e:
            errors.append(str(e))
    out["errors"] = errors
    out["uart"] = type(ctx.uarts["nfc"]).__name__
    print("RESULT " + json.dumps(out))


asyncio.run(main(*sys.argv[1:4]))
