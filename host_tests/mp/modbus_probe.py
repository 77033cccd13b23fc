# Drives lib/modbus.py and hw/modbus_meter.py on the MicroPython unix port for
# host_tests/test_modbus.py. Commands on stdin, one JSON line out per command.
# A 1 ms ticker task runs all along; every answer carries the longest gap it
# saw between two of its wakeups during that command ("stall_us"), i.e. how long
# the event loop was kept from running it.
#
#   open <tty> <baud> [timeout_ms]       the bus (hw.serial_unix.Serial + ModbusRTU)
#   open_uart <tty> <baud> [timeout_ms]  the bus over a machine.UART look-alike, with a DE pin
#   de                                   the DE pin's changes since the last `de`
#   stream <tty> <baud> <hex request> <n>  a request, then n bytes through asyncio.StreamReader
#   ttyattr <tty> <baud> <parity> <stop>   what hw.serial_unix.Serial sets on the tty
#   meter <name> <address> <profile> [phases]
#   read <name>                          ModbusMeter.read()
#   identify <name>
#   raw <address> <fc> <start> <count>   ModbusRTU.read_registers()
#   bench <name> <n>                     n polls: cycle times
#   rawbench <n> <address> <fc> <start> <count> [...]   n cycles of these requests
#   alloc <n> <address> <fc> <start> <count>            heap bytes per transaction
#   mealloc <name> <n>                   heap bytes per ModbusMeter.read()
#   heaplock <n> <address> <fc> <start> <count>         transactions under heap_lock
#   crc <hex>
#   concurrent <name> <name> <n>         two meters polled at once on one bus
#   build <tty> <baud> <json list of meter specs>   hw/build.py meter()
import sys
import gc
import json
import time
import asyncio
import micropython
from modbus import ModbusRTU, ModbusError, crc16
from hw.serial_unix import Serial
from hw.modbus_meter import ModbusMeter

bus = None
meters = {}
tick = [0, 0]  # last wakeup (ticks_us), longest gap (us)


async def ticker():
    tick[0] = time.ticks_us()
    while True:
        await asyncio.sleep_ms(1)
        t = time.ticks_us()
        gap = time.ticks_diff(t, tick[0])
        tick[0] = t
        if gap > tick[1]:
            tick[1] = gap


def out(d):
    d["stall_us"] = tick[1]
    print(json.dumps(d))


class FakeUART:
    # machine.UART's semantics over a tty: any() counts what is waiting,
    # readinto(buf, n), txdone() once the bytes written would have left.
    def __init__(self, serial, baud):
        self.s = serial
        self.buf = bytearray(1024)
        self.n = 0
        self.char_us = 10000000 // baud
        self.done_at = time.ticks_us()

    def any(self):
        k = self.s.readinto(memoryview(self.buf)[self.n:])
        if k:
            self.n += k
        return self.n

    def readinto(self, b, n=-1):
        k = min(len(b), self.n if n < 0 else min(n, self.n))
        if not k:
            return None
        b[:k] = self.buf[:k]
        self.buf[:self.n - k] = self.buf[k:self.n]
        self.n -= k
        return k

    def write(self, b):
        self.done_at = time.ticks_add(time.ticks_us(), len(b) * self.char_us)
        return self.s.write(b)

    def txdone(self):
        return time.ticks_diff(time.ticks_us(), self.done_at) >= 0


class FakePin:
    def __init__(self):
        self.log = []

    def value(self, v=None):
        self.log.append((v, time.ticks_us()))


de_pin = FakePin()


class _Ready:
    # An asyncio.Lock stand-in whose acquire allocates nothing (heaplock only).
    def __init__(self):
        self.exc = StopIteration()

    def acquire(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        self.exc.__traceback__ = None
        raise self.exc

    def release(self):
        pass


async def error_of(coro):
    try:
        return await coro, None
    except ModbusError as e:
        return None, {"error": str(e), "kind": e.kind, "code": e.code}


async def command(w):
    global bus
    c = w[0]
    if c == "open":
        bus = ModbusRTU(Serial(w[1], int(w[2])), int(w[2]), None, int(w[3]) if len(w) > 3 else 200)
        out({"ok": True, "t35_us": bus._t35_us})
    elif c == "open_uart":
        # the board path: machine.UART-like stream and an RS-485 DE pin
        baud = int(w[2])
        bus = ModbusRTU(FakeUART(Serial(w[1], baud), baud), baud, de_pin, int(w[3]) if len(w) > 3 else 200)
        out({"ok": True})
    elif c == "de":
        t0 = de_pin.log[0][1] if de_pin.log else 0
        out({"log": [(v, time.ticks_diff(t, t0)) for v, t in de_pin.log]})
        de_pin.log = []
    elif c == "stream":
        # hw.serial_unix.Serial under asyncio.StreamReader (as hw/modem.py uses it)
        ser = Serial(w[1], int(w[2]))
        rd = asyncio.StreamReader(ser)
        req = bytearray(bytes.fromhex(w[3]))
        crc = crc16(req)
        ser.write(req + bytes((crc & 0xFF, crc >> 8)))
        t = time.ticks_ms()
        data = await asyncio.wait_for_ms(rd.readexactly(int(w[4])), 1000)
        waited = time.ticks_diff(time.ticks_ms(), t)
        try:
            await asyncio.wait_for_ms(rd.read(1), 300)
            extra = "data"
        except asyncio.TimeoutError:
            extra = "timeout"
        ser.close()
        out({"hex": data.hex(), "ms": waited, "then": extra})
    elif c == "ttyattr":
        import termios
        par = None if w[3] == "None" else (int(w[3]) if w[3].isdigit() else w[3])
        try:
            ser = Serial(w[1], int(w[2]), par, int(w[4]))
        except (OSError, ValueError) as e:
            out({"error": str(e)})
            return
        a = termios.tcgetattr(ser.fileno())
        ser.close()
        out({"iflag": a[0], "oflag": a[1], "cflag": a[2], "lflag": a[3], "speed": a[4], "vtime": a[6][5],
             "vmin": a[6][6]})
    elif c == "meter":
        meters[w[1]] = ModbusMeter(bus, int(w[2]), w[3], int(w[4]) if len(w) > 4 else 3, w[1])
        out({"ok": True})
    elif c == "read":
        m = meters[w[1]]
        t = time.ticks_ms()
        r = await m.read()
        out({"values": r, "ms": time.ticks_diff(time.ticks_ms(), t), "last_error": m.last_error,
             "failures": m.failures})
    elif c == "identify":
        out({"fields": await meters[w[1]].identify()})
    elif c == "raw":
        t = time.ticks_ms()
        data, err = await error_of(bus.read_registers(int(w[1]), int(w[2]), int(w[3]), int(w[4])))
        d = err or {"hex": bytes(data).hex()}
        d["ms"] = time.ticks_diff(time.ticks_ms(), t)
        d["dropped"] = bus.dropped
        out(d)
    elif c == "bench":
        m = meters[w[1]]
        times = []
        fails = 0
        for _ in range(int(w[2])):
            t = time.ticks_us()
            if await m.read() is None:
                fails += 1
            times.append(time.ticks_diff(time.ticks_us(), t))
        out({"min_us": min(times), "avg_us": sum(times) // len(times), "max_us": max(times), "fails": fails})
    elif c == "rawbench":
        n = int(w[1])
        reqs = [[int(x) for x in w[k:k + 4]] for k in range(2, len(w), 4)]
        times = []
        for _ in range(n):
            t = time.ticks_us()
            for a, fc, s, k in reqs:
                await bus.read_registers(a, fc, s, k)
            times.append(time.ticks_diff(time.ticks_us(), t))
        out({"min_us": min(times), "avg_us": sum(times) // len(times), "max_us": max(times)})
    elif c == "alloc":
        n, a, fc, s, k = [int(x) for x in w[1:6]]
        await bus.read_registers(a, fc, s, k)  # views cached, everything warm
        gc.collect()
        gc.disable()
        m0 = gc.mem_alloc()
        for _ in range(n):
            await bus.read_registers(a, fc, s, k)
        m1 = gc.mem_alloc()
        # the parts that cannot be avoided: the coroutine object of the call
        # and the generator of asyncio.Lock.acquire()
        lock = bus.lock
        for _ in range(n):
            await lock.acquire()
            lock.release()
        m2 = gc.mem_alloc()
        for _ in range(n):
            bus.read_registers(a, fc, s, k).close()
        m3 = gc.mem_alloc()
        gc.enable()
        out({"per_transaction": (m1 - m0) / n, "lock_acquire": (m2 - m1) / n, "coroutine": (m3 - m2) / n})
    elif c == "mealloc":
        m = meters[w[1]]
        n = int(w[2])
        await m.read()
        gc.collect()
        gc.disable()
        m0 = gc.mem_alloc()
        for _ in range(n):
            await m.read()
        m1 = gc.mem_alloc()
        gc.enable()
        out({"per_poll": (m1 - m0) / n})
    elif c == "heaplock":
        n, a, fc, s, k = [int(x) for x in w[1:6]]
        real = bus.lock
        bus.lock = _Ready()
        coros = [bus.read_registers(a, fc, s, k) for _ in range(n)]
        await bus.read_registers(a, fc, s, k)
        gc.collect()
        ok = 0
        micropython.heap_lock()
        try:
            for co in coros:
                await co
                ok += 1
            micropython.heap_unlock()
            out({"ok": ok})
        except MemoryError:
            micropython.heap_unlock()
            out({"ok": ok, "error": "MemoryError: the transaction allocated"})
        finally:
            bus.lock = real
    elif c == "build":
        # two meters from board-file specs on one UART: hw/build.py meter()
        from hw import build
        board = {"uarts": {"rs485": {"path": w[1], "baudrate": int(w[2])}}}
        ctx = build.Context(board, None)
        specs = json.loads(" ".join(w[3:]))
        ms = [build.meter(i + 1, spec, ctx, None) for i, spec in enumerate(specs)]
        res = []
        for m in ms:
            res.append(await m.read())
        out({"buses": len(ctx.modbus_buses), "shared": all(m.bus is ms[0].bus for m in ms),
             "types": [m.meter_type for m in ms], "values": res})
    elif c == "crc":
        b = bytes.fromhex(w[1])
        out({"crc": crc16(b), "check": crc16(b + bytes((crc16(b) & 0xFF, crc16(b) >> 8)))})
    elif c == "concurrent":
        n = int(w[3])
        ma, mb = meters[w[1]], meters[w[2]]

        async def many(m):
            good = 0
            for _ in range(n):
                if await m.read() is not None:
                    good += 1
            return good
        ra, rb = await asyncio.gather(many(ma), many(mb))
        out({"a": ra, "b": rb, "dropped": bus.dropped})
    else:
        out({"error": "unknown command " + c})


async def main():
    asyncio.create_task(ticker())
    stdin = asyncio.StreamReader(sys.stdin.buffer)
    while True:
        line = await stdin.readline()
        if not line:
            return
        w = line.decode().split()
        if not w:
            continue
        if w[0] == "quit":
            return
        tick[1] = 0
        try:
            await command(w)
        except Exception as e:
            out({"exception": "%s: %s" % (type(e).__name__, e)})


asyncio.run(main())
