# The unix board's "front panel": commands on standard input, one per line.
# It is how a person, or a test, plugs vehicles in and presents cards.
#   plug <c> | unplug <c> | card <c> <idTag> | load <c> <amps>
#   set <key> <value> | status | datatransfer <vendorId> [messageId] [data] | quit
import asyncio
import sys
import micropython
import log

HELP = "commands: plug <c>, unplug <c>, card <c> <idTag>, load <c> <amps>, set <key> <value>, status, datatransfer <vendorId> [messageId] [data], quit"


async def run(station, config, cp, meters):
    reader = asyncio.StreamReader(sys.stdin.buffer)
    while True:
        line = await reader.readline()
        if not line:
            # stdin closed: keep running (a service without a terminal).
            await asyncio.Event().wait()
        words = line.decode().split()
        if not words:
            continue
        try:
            if await _command(station, config, cp, meters, words):
                return
        except (ValueError, IndexError):
            log.warn("console", "bad command %r; %s" % (" ".join(words), HELP))
        except Exception as e:
            log.exc("console", "command failed", e)


async def _command(station, config, cp, meters, w):
    cmd = w[0]
    if cmd == "quit":
        log.info("console", "quit; heap peak %d bytes" % micropython.mem_peak())
        return True
    if cmd == "plug":
        station.plug(int(w[1]))
    elif cmd == "unplug":
        station.unplug(int(w[1]))
    elif cmd == "card":
        asyncio.create_task(station.present_card(int(w[1]), w[2]))
    elif cmd == "load":
        meters[int(w[1])].load = float(w[2])
        log.info("console", "connector %s: vehicle asks for %s A" % (w[1], w[2]))
    elif cmd == "set":
        log.info("console", "set %s: %s" % (w[1], config.set(w[1], " ".join(w[2:]), False)))
    elif cmd == "status":
        for c in station.connectors:
            log.info("console", "connector %d: %s %s, %s Wh" % (c.id, c.status, c.error_code, c.energy()))
    elif cmd == "datatransfer":
        answer = await cp.data_transfer(w[1], w[2] if len(w) > 2 else None, " ".join(w[3:]) if len(w) > 3 else None)
        log.info("console", "DataTransfer answer: %s" % answer)
    else:
        log.warn("console", "unknown command %r; %s" % (cmd, HELP))
    return False
