"""Simulated Modbus RTU energy meters on a pseudo-terminal, for tests and demos.

A pymodbus 3.16 RTU server (SimDevice/SimData API) answers on one raw pty; a
bridge thread joins it to a second raw pty whose path the firmware opens, like a
null-modem cable. The bridge paces bytes at the configured baud rate (10 bits per
character, 8N1), so frame times on the firmware side are those of a real RS-485
bus, and it can unplug the cable. Register values are encoded from physical
values with the register maps below, written from the vendors' manuals
independently of firmware/hw/meters.py, so the firmware's decoding is checked
against a second reading of the documentation.

From pytest (same process):

    sim = MeterSim(profile="SDM630", address=1, baudrate=9600)
    path = sim.start()                      # give this tty path to the firmware
    sim.set(energy_wh=1234.5, power_w=7360, current_a=(10, 10, 12), voltage_v=(230, 231, 229))
    sim.fault("crc")                        # "silent" "crc" "garbage" "short" "wrong_address"
                                            # "exception" (code=2..) "unplugged", None = healthy
    sim.fault("silent", count=2)            # only the next two answers
    sim.add_meter("ABB_B23", 2)             # a second meter on the same bus
    sim.stop()

From a shell (commands on stdin: set energy_wh=... power_w=..., fault crc, fault none,
unplug, plug, status, quit):

    python tools/meter_sim.py --profile SDM630 --address 1 --baud 9600 --link /tmp/meter.tty
"""
import argparse
import asyncio
import logging
import os
import pty
import select
import struct
import sys
import termios
import threading
import time
import tty

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

# ---- register maps (vendor manuals) -----------------------------------------
# Each entry: (register, encoding, quantity, scale). The register holds
# quantity * scale, e.g. energy in Wh with scale 0.001 is stored as kWh.
# Quantities: v1..v3 (V), i1..i3 (A), p1..p3 and p (W), f (Hz), e_imp / e_exp (Wh),
# e_tot (Wh), serial, or a constant ("=value").
_SDM_PHASES = [(0x0000, "f32", "v1", 1), (0x0002, "f32", "v2", 1), (0x0004, "f32", "v3", 1),
               (0x0006, "f32", "i1", 1), (0x0008, "f32", "i2", 1), (0x000A, "f32", "i3", 1),
               (0x000C, "f32", "p1", 1), (0x000E, "f32", "p2", 1), (0x0010, "f32", "p3", 1)]
_SDM_TOTALS = [(0x0034, "f32", "p", 1), (0x0046, "f32", "f", 1),
               (0x0048, "f32", "e_imp", 0.001), (0x004A, "f32", "e_exp", 0.001),
               (0x0156, "f32", "e_tot", 0.001)]

MAPS = {
    # Eastron SDM630 Modbus protocol v1.8/v2.0: input registers (FC04), float32,
    # high word first; at most 40 parameters (80 registers) per request.
    "SDM630": {
        "input": _SDM_PHASES + _SDM_TOTALS, "input_blocks": [(0x0000, 80), (0x0156, 2)],
        "holding": [(0xFC00, "u32", "serial", 1), (0xFC02, "u16", "=112", 1)],
        "holding_blocks": [(0xFC00, 3)], "max_regs": 80, "phases": 3,
    },
    # Eastron SDM120-Modbus protocol v2.4: single phase; the active power is at 0x000C.
    "SDM120": {
        "input": [(0x0000, "f32", "v1", 1), (0x0006, "f32", "i1", 1), (0x000C, "f32", "p", 1),
                  (0x0046, "f32", "f", 1), (0x0048, "f32", "e_imp", 0.001),
                  (0x004A, "f32", "e_exp", 0.001), (0x0156, "f32", "e_tot", 0.001)],
        "input_blocks": [(0x0000, 80), (0x0156, 2)],
        "holding": [(0xFC00, "u32", "serial", 1)], "holding_blocks": [(0xFC00, 2)],
        "max_regs": 80, "phases": 1,
    },
    # Eastron SDM72D-M-2 (v2) protocol: at most 30 parameters (60 registers) per request.
    "SDM72D-M": {
        "input": _SDM_PHASES + _SDM_TOTALS, "input_blocks": [(0x0000, 80), (0x0156, 2)],
        "holding": [(0xFC00, "u32", "serial", 1), (0xFC02, "u16", "=137", 1)],  # meter code 0x0089
        "holding_blocks": [(0xFC00, 3)], "max_regs": 60, "phases": 3,
    },
    # ABB B23/B24 user manual 2CMC485003M0201: holding registers (FC03) only,
    # big-endian integers; up to 125 registers per request.
    "ABB_B23": {
        "fc3_only": True,
        "holding": [(0x5000, "u64", "e_imp", 0.1), (0x5004, "u64", "e_exp", 0.1),
                    (0x5008, "s64", "e_net", 0.1),
                    (0x5B00, "u32", "v1", 10), (0x5B02, "u32", "v2", 10), (0x5B04, "u32", "v3", 10),
                    (0x5B0C, "u32", "i1", 100), (0x5B0E, "u32", "i2", 100), (0x5B10, "u32", "i3", 100),
                    (0x5B14, "s32", "p", 100), (0x5B16, "s32", "p1", 100), (0x5B18, "s32", "p2", 100),
                    (0x5B1A, "s32", "p3", 100), (0x5B2C, "u16", "f", 100),
                    (0x8900, "u32", "serial", 1), (0x8960, "ascii12", "=B23 312-100", 1)],
        "holding_blocks": [(0x5000, 0x30), (0x5B00, 0x40), (0x8900, 2), (0x8960, 6)],
        "max_regs": 125, "phases": 3,
    },
}
ALIASES = {"SDM72D-M-2": "SDM72D-M", "SDM72DM2": "SDM72D-M", "SDM72": "SDM72D-M", "B23": "ABB_B23",
           "ABB B23": "ABB_B23", "ABB-B23": "ABB_B23"}
FAULTS = ("silent", "crc", "garbage", "short", "wrong_address", "exception", "unplugged")


def profile_key(name):
    key = ALIASES.get(name, name)
    if key not in MAPS:
        raise ValueError("unknown meter profile %r (known: %s)" % (name, ", ".join(sorted(MAPS))))
    return key


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame):
    return frame + struct.pack("<H", crc16(frame))


def encode(kind, value):
    """Register words for one value."""
    if kind == "f32":
        raw = struct.pack(">f", value)
    elif kind in ("u16", "s16", "u32", "s32", "u64", "s64"):
        fmt = {"u16": ">H", "s16": ">h", "u32": ">I", "s32": ">i", "u64": ">Q", "s64": ">q"}[kind]
        raw = struct.pack(fmt, int(round(value)))
    elif kind.startswith("ascii"):
        n = int(kind[5:])
        raw = str(value).encode()[:n].ljust(n, b"\0")
    else:
        raise ValueError(kind)
    return list(struct.unpack(">%dH" % (len(raw) // 2), raw))


class Meter:
    """One simulated meter: physical values, their register image, its faults."""

    def __init__(self, profile, address, serial=None):
        self.key = profile_key(profile)
        self.map = MAPS[self.key]
        self.address = address
        n = self.map["phases"]
        self.values = {"v": (230.0,) * n, "i": (0.0,) * n, "p": 0.0, "f": 50.0,
                       "e_imp": 0.0, "e_exp": 0.0, "serial": serial if serial is not None else 12345000 + address}
        self.phase_power = None  # explicit per-phase powers, else p split by current
        self.fault = None
        self.fault_count = None
        self.exception_code = ExcCodes.ILLEGAL_ADDRESS
        self.integrate = False
        self._last_t = time.monotonic()
        self.image = {"h": {}, "i": {}}
        self.rebuild()

    def quantity(self, name):
        v = self.values
        if name.startswith("="):
            text = name[1:]
            return int(text) if text.isdigit() else text
        if name[0] in "vi" and name[1:].isdigit():
            vals = v[name[0]]
            k = int(name[1:]) - 1
            return vals[k] if k < len(vals) else 0.0
        if name in ("p1", "p2", "p3"):
            k = int(name[1:]) - 1
            if self.phase_power:
                return self.phase_power[k] if k < len(self.phase_power) else 0.0
            amps = v["i"]  # the total split by the phase currents
            total = sum(amps)
            return v["p"] * amps[k] / total if total and k < len(amps) else 0.0
        if name == "e_tot":
            return v["e_imp"] + v["e_exp"]
        if name == "e_net":
            return v["e_imp"] - v["e_exp"]
        return v[name]

    def rebuild(self):
        for table in ("holding", "input"):
            img = self.image["h" if table == "holding" else "i"]
            for start, count in self.map.get(table + "_blocks", ()):
                for a in range(start, start + count):
                    img.setdefault(a, 0)
            for reg, kind, name, scale in self.map.get(table, ()):
                q = self.quantity(name)
                words = encode(kind, q * scale if isinstance(q, (int, float)) and scale != 1 else q)
                for k, w in enumerate(words):
                    img[reg + k] = w

    def advance(self):
        # Energy registers integrate the power while `integrate` is on.
        now = time.monotonic()
        if self.integrate:
            p = self.values["p"]
            if p > 0:
                self.values["e_imp"] += p * (now - self._last_t) / 3600.0
            elif p < 0:
                self.values["e_exp"] += -p * (now - self._last_t) / 3600.0
            self.rebuild()
        self._last_t = now

    def device(self, action):
        def blocks(table):
            out = [SimData(start, count=1, values=[0] * count, datatype=DataType.REGISTERS)
                   for start, count in self.map.get(table + "_blocks", ())]
            # pymodbus needs every table non-empty; a lone register at 0 stands in.
            return out or [SimData(0, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(id=self.address, simdata=(bits, list(bits), blocks("holding"), blocks("input")),
                         action=action)


class MeterSim:
    """Simulated meters on one RS-485 bus, served on a pty pair (see module docstring)."""

    def __init__(self, profile="SDM630", address=1, baudrate=9600, serial=None, pace=True,
                 latency_ms=2.0, link=None, integrate=False):
        self.baudrate = baudrate
        self.pace = pace
        self.latency = latency_ms / 1000.0
        self.link = link
        self.meters = {}
        self.requests = []  # (monotonic time, address, function, start, count)
        self.unplugged = False
        self._lock = threading.Lock()
        self._thread = None
        self._bridge = None
        self._loop = None
        self._server = None
        self._stop = threading.Event()
        self.path = None
        m = self.add_meter(profile, address, serial)
        m.integrate = integrate

    # ---- control ----------------------------------------------------------
    def add_meter(self, profile, address, serial=None):
        """Another meter on the same bus (before start())."""
        if self._thread:
            raise RuntimeError("add meters before start()")
        m = Meter(profile, address, serial)
        self.meters[address] = m
        return m

    def meter(self, address=None):
        return self.meters[address] if address is not None else next(iter(self.meters.values()))

    def set(self, energy_wh=None, power_w=None, current_a=None, voltage_v=None, frequency_hz=None,
            export_wh=None, serial=None, phase_power_w=None, integrate=None, address=None):
        """Change the physical values the meter reports (takes effect on the next request)."""
        m = self.meter(address)
        n = m.map["phases"]

        def per_phase(v):
            v = tuple(float(x) for x in (v if isinstance(v, (tuple, list)) else (v,) * n))
            return (v + (0.0,) * n)[:n]

        with self._lock:
            v = m.values
            if energy_wh is not None:
                v["e_imp"] = float(energy_wh)
            if export_wh is not None:
                v["e_exp"] = float(export_wh)
            if power_w is not None:
                v["p"] = float(power_w)
            if current_a is not None:
                v["i"] = per_phase(current_a)
            if voltage_v is not None:
                v["v"] = per_phase(voltage_v)
            if frequency_hz is not None:
                v["f"] = float(frequency_hz)
            if serial is not None:
                v["serial"] = int(serial)
            if phase_power_w is not None:
                m.phase_power = per_phase(phase_power_w)
            if integrate is not None:
                m.integrate = bool(integrate)
            m._last_t = time.monotonic()
            m.rebuild()

    def values(self, address=None):
        with self._lock:
            return dict(self.meter(address).values)

    def fault(self, kind, count=None, code=None, address=None):
        """Inject a fault into the meter's answers: None (healthy), "silent" (no answer),
        "crc" (last CRC byte flipped), "garbage" (noise instead of the answer), "short"
        (the answer cut in half), "wrong_address" (answer from another address, valid CRC),
        "exception" (Modbus exception `code`, default 2), "unplugged" (the whole cable:
        nothing passes either way until fault(None) or plug()). `count` limits the fault
        to that many answers; `address` picks a meter (default: the first one), and
        fault(None) without it heals every meter and the cable."""
        if kind is not None and kind not in FAULTS:
            raise ValueError("unknown fault %r (one of %s)" % (kind, ", ".join(FAULTS)))
        with self._lock:
            if kind == "unplugged":
                self.unplugged = True
                return
            if kind is None and address is None:  # everything healthy again
                self.unplugged = False
                for m in self.meters.values():
                    m.fault = m.fault_count = None
                return
            m = self.meter(address)
            m.fault = kind
            m.fault_count = count
            if code is not None:
                m.exception_code = ExcCodes(code)

    def unplug(self):
        self.fault("unplugged")

    def plug(self):
        with self._lock:
            self.unplugged = False

    def wait_requests(self, n, timeout=10.0):
        end = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < end:
            time.sleep(0.01)
        return len(self.requests) >= n

    # ---- pymodbus hooks (run in the server's thread) ----------------------
    def _take_fault(self, m):
        # The fault for this answer, counting down limited faults.
        if m.fault is None:
            return None
        kind = m.fault
        if m.fault_count is not None:
            m.fault_count -= 1
            if m.fault_count <= 0:
                m.fault, m.fault_count = None, None
        return kind

    async def _action(self, address, fc, start_address, reg, count, registers, set_values):
        with self._lock:
            m = self.meters[address]
            self.requests.append((time.monotonic(), address, fc, reg, count))
            if m.map.get("fc3_only") and fc != 3:
                return ExcCodes.ILLEGAL_FUNCTION
            if count > m.map["max_regs"]:
                return ExcCodes.ILLEGAL_VALUE
            if m.fault == "exception":
                self._take_fault(m)
                return m.exception_code
            m.advance()
            img = m.image["h" if fc == 3 else "i"]
            for a in range(reg, reg + count):
                registers[a - start_address] = img.get(a, 0)
        return None

    def _trace_packet(self, sending, data):
        if not sending or not data:
            return data
        with self._lock:
            m = self.meters.get(data[0])
            if m is None:  # a real bus: unknown addresses stay silent
                return b""
            if m.map.get("fc3_only") and data[1] & 0x7F != 3:
                return with_crc(bytes([data[0], data[1] | 0x80, ExcCodes.ILLEGAL_FUNCTION]))
            kind = self._take_fault(m) if m.fault != "exception" else None
        if kind == "silent":
            return b""
        if kind == "crc":
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        if kind == "garbage":
            noise = bytes((m.address + 0x40 + 37 * k) & 0xFF for k in range(len(data)))
            return noise if noise[0] != m.address else b"\xff" + noise[1:]
        if kind == "short":
            return data[: max(1, len(data) // 2)]
        if kind == "wrong_address":
            return with_crc(bytes([(data[0] % 247) + 1]) + data[1:-2])
        if self.latency:
            time.sleep(self.latency)  # the meter's turnaround (runs in the server thread)
        return data

    # ---- plumbing -----------------------------------------------------------
    def start(self):
        """Open the pty pair, start the server and the bridge; return the firmware's tty path."""
        self._fw_master, self._fw_slave = pty.openpty()
        self._srv_master, self._srv_slave = pty.openpty()
        for fd in (self._fw_slave, self._srv_slave):
            tty.setraw(fd)
            attr = termios.tcgetattr(fd)
            attr[6][termios.VMIN], attr[6][termios.VTIME] = 0, 0
            termios.tcsetattr(fd, termios.TCSANOW, attr)
        for fd in (self._fw_master, self._srv_master):
            os.set_blocking(fd, False)
        self.path = os.ttyname(self._fw_slave)
        if self.link:
            try:
                os.unlink(self.link)
            except FileNotFoundError:
                pass
            os.symlink(self.path, self.link)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True, name="meter-sim")
        self._thread.start()
        if not ready.wait(10) or self._server is None:
            raise RuntimeError("the simulated meter's Modbus server did not start")
        self._bridge = threading.Thread(target=self._bridge_loop, daemon=True, name="meter-sim-bus")
        self._bridge.start()
        return self.link or self.path

    def _serve(self, ready):
        # pymodbus logs every odd frame (fault injection makes many) with a dump.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def main():
            devices = []
            for m in self.meters.values():
                async def action(fc, start_address, reg, count, registers, set_values, _a=m.address):
                    return await self._action(_a, fc, start_address, reg, count, registers, set_values)
                devices.append(m.device(action))
            if 0 not in self.meters:
                # pymodbus hands unknown addresses to device 0; its answers are
                # dropped in _trace_packet, so other addresses stay silent.
                bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
                regs = [SimData(0, values=0, datatype=DataType.REGISTERS)]
                devices.append(SimDevice(id=0, simdata=(bits, list(bits), regs, list(regs))))
            self._server = ModbusSerialServer(
                devices, framer=FramerType.RTU, port=os.ttyname(self._srv_slave), baudrate=self.baudrate,
                trace_packet=self._trace_packet)
            await self._server.serve_forever(background=True)
            ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            await self._server.shutdown()

        try:
            self._loop.run_until_complete(main())
        finally:
            ready.set()
            self._loop.close()

    def _bridge_loop(self):
        # Both directions, paced at the baud rate: a byte written at t leaves the
        # other end at t + 10 bits / baud after the previous one.
        char = 10.0 / self.baudrate if self.pace else 0.0
        pending = {self._fw_master: [], self._srv_master: []}  # source fd -> [(due, byte)]
        free_at = {self._fw_master: 0.0, self._srv_master: 0.0}
        other = {self._fw_master: self._srv_master, self._srv_master: self._fw_master}
        while not self._stop.is_set():
            now = time.monotonic()
            due = [p[0][0] for p in pending.values() if p]
            wait = max(0.0, min(due) - now) if due else 0.05
            try:
                rd, _, _ = select.select(list(pending), [], [], min(wait, 0.05))
            except (OSError, ValueError):
                return
            now = time.monotonic()
            for fd in rd:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: no process has the other side open right now
                    time.sleep(0.01)
                    continue
                with self._lock:
                    cut = self.unplugged
                if cut or not data:
                    continue
                t = max(now, free_at[fd])
                for b in data:
                    t += char
                    pending[fd].append((t, b))
                free_at[fd] = t
            with self._lock:
                cut = self.unplugged
            for fd, queue in pending.items():
                if cut:
                    queue.clear()
                    continue
                k = 0
                while k < len(queue) and queue[k][0] <= now:
                    k += 1
                if k:
                    out = bytes(b for _, b in queue[:k])
                    del queue[:k]
                    try:
                        os.write(other[fd], out)
                    except OSError:
                        pass

    def stop(self):
        self._stop.set()
        if self._bridge:
            self._bridge.join(5)
        if self._thread:
            self._thread.join(5)
        for fd in (getattr(self, "_fw_master", None), getattr(self, "_fw_slave", None),
                   getattr(self, "_srv_master", None), getattr(self, "_srv_slave", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.link:
            try:
                os.unlink(self.link)
            except OSError:
                pass
        self._thread = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


# ---- command line -----------------------------------------------------------

def _command(sim, line):
    words = line.split()
    if not words:
        return True
    cmd, args = words[0], words[1:]
    if cmd == "quit":
        return False
    if cmd == "set":
        kw = {}
        for a in args:
            k, _, v = a.partition("=")
            vals = [float(x) for x in v.split(",")]
            kw[k] = vals[0] if len(vals) == 1 else tuple(vals)
        sim.set(**kw)
    elif cmd == "fault":
        kind = None if not args or args[0] in ("none", "ok") else args[0]
        code = int(args[1]) if len(args) > 1 else None
        sim.fault(kind, code=code)
    elif cmd == "unplug":
        sim.unplug()
    elif cmd == "plug":
        sim.plug()
    elif cmd == "status":
        for m in sim.meters.values():
            print("meter %d %s fault=%s values=%s" % (m.address, m.key, m.fault, m.values), flush=True)
        print("requests %d unplugged=%s" % (len(sim.requests), sim.unplugged), flush=True)
    else:
        print("commands: set k=v..., fault <kind|none> [code], unplug, plug, status, quit", flush=True)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description="Simulated Modbus RTU energy meter on a pty")
    ap.add_argument("--profile", default="SDM630", help="|".join(sorted(MAPS)))
    ap.add_argument("--address", type=int, default=1)
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--link", help="also make this symlink to the tty")
    ap.add_argument("--energy", type=float, default=0.0, help="import energy register, Wh")
    ap.add_argument("--power", type=float, default=0.0, help="W; with --integrate the energy grows")
    ap.add_argument("--current", type=float, default=0.0, help="A per phase")
    ap.add_argument("--integrate", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sim = MeterSim(args.profile, args.address, args.baud, link=args.link, integrate=args.integrate)
    path = sim.start()
    sim.set(energy_wh=args.energy, power_w=args.power, current_a=args.current)
    print("meter %s at address %d on %s (%d Bd)" % (args.profile, args.address, path, args.baud), flush=True)
    try:
        for line in sys.stdin:
            try:
                if not _command(sim, line):
                    break
            except (TypeError, ValueError, KeyError) as e:
                print("error: %s" % e, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
