# The control pilot (hw/pilot.py) on the unix port, against the simulated line
# and vehicle of hw/sim_line.py:   dev_pilot.py SCENARIO [JSON]
#   duty      duty_for at the given currents, and what offer() writes to the PWM
#   bands     state_for for the given [high_mv, low_mv] pairs
#   vehicle   every vehicle state, with and without PWM, at several currents
#   debounce  a state is reported after two measurements; glitches never are
#   timing    the longest state() call (and the loop's longest stall)
#   alloc     what a state() call allocates, for windows of 300-2000 us
#   boards    build.pilot for each board file's pilot entries, with stand-in
#             machine.Pin / PWM / ADC classes driven by the simulated line
#   errors    build.pilot's refusals, and the unix port without machine.PWM
# JSON: the argument itself, or @PATH of a file holding it (this unix build
# dies with "uncaught NLR" on a command-line argument longer than ~256 bytes).
# Prints log lines and one "RESULT {json}" line.
import sys
import json
import time

scenario = sys.argv[1]
arg = sys.argv[2] if len(sys.argv) > 2 else None
if arg and arg[0] == "@":
    with open(arg[1:]) as f:
        arg = f.read()
arg = json.loads(arg) if arg else None
out = {}

if scenario == "boards":
    # machine.Pin / PWM / ADC stand-ins; the ADC answers from a SimADC built
    # with the stage the README documents for the board (set per entry below).
    class _Pin:
        def __init__(self, n, *a, **k):
            self.n = n

    class _PWM:
        made = []

        def __init__(self, pin, freq=None, duty_u16=None):
            from hw.sim_line import SimPWM
            self.sim = SimPWM()
            self.pin = pin.n
            self.first = (freq, duty_u16)
            if freq is not None:
                self.sim.freq(freq)
            if duty_u16 is not None:
                self.sim.duty_u16(duty_u16)
            _PWM.made.append(self)

        def freq(self, f=None):
            return self.sim.freq(f)

        def duty_u16(self, d=None):
            return self.sim.duty_u16(d)

    class _ADC:
        ATTN_0DB, ATTN_2_5DB, ATTN_6DB, ATTN_11DB = 0, 1, 2, 3
        made = []
        stage = None  # (r1, r2, r3, vref_mv)

        def __init__(self, pin, atten=None):
            from hw.sim_line import SimADC
            self.pin = pin.n
            self.atten = atten
            r1, r2, r3, vref = _ADC.stage
            self.sim = SimADC(_PWM.made[-1].sim, _ADC.vehicle, r1=r1, r2=r2, r3=r3, vref_mv=vref, clock=CLOCK)
            _ADC.made.append(self)

        def read_u16(self):
            return self.sim.read_u16()

        def read_uv(self):
            return self.sim.read_uv()

    class _Machine:
        Pin = _Pin
        PWM = _PWM
        ADC = _ADC

    sys.modules["machine"] = _Machine()

from hw.pilot import Pilot, duty_for, state_for  # noqa: E402
from hw.sim_line import SimPWM, SimADC, SimVehicle, SimClock  # noqa: E402
from hw import build  # noqa: E402
import hw.pilot  # noqa: E402

# Every scenario but "timing", "alloc" and "errors" runs on a simulated clock that only
# the ADC's reads move (20-23 us each): repeatable windows that a busy host
# cannot preempt. The preemption the real clock would bring is injected.
CLOCK = SimClock()
if scenario not in ("timing", "errors", "alloc"):
    hw.pilot.time = CLOCK


def settle(p, n=5):
    # state() a few times: the window after offer() is skipped, then two must
    # agree (on the real clock, windows the host preempted are skipped too)
    for _ in range(n):
        s = p.state()
    return s


def line(**kw):
    pwm, v = SimPWM(), SimVehicle()
    if scenario != "timing":
        kw["clock"] = CLOCK
    return pwm, v, SimADC(pwm, v, **kw)


if scenario == "duty":
    out["duty"] = [[a, duty_for(a)] for a in arg]
    pwm, v, adc = line()
    p = Pilot(pwm, adc)
    steps = [["boot", pwm.freq(), pwm.duty_u16(), p.offered(), p.duty()]]
    for a in arg:
        p.offer(a)
        steps.append([a, pwm.freq(), pwm.duty_u16(), p.offered(), p.duty()])
    out["offer"] = steps
    pwm, v, adc = line(invert=True)
    p = Pilot(pwm, adc, invert=True)
    inv = [[None, pwm.duty_u16(), p.state()]]
    for a in (16, None):
        p.offer(a)
        inv.append([a, pwm.duty_u16(), p.state()])
    v.set("C")
    p.offer(32)
    inv.append(["C32", pwm.duty_u16(), settle(p), p.high_mv, p.low_mv])
    out["invert"] = inv

elif scenario == "bands":
    out["states"] = [[h, lo, state_for(h, lo)] for h, lo in arg]

elif scenario == "vehicle":
    pwm, v, adc = line()
    p = Pilot(pwm, adc)
    rows = []
    for st, diode in (("A", True), ("B", True), ("C", True), ("D", True), ("E", True),
                      ("B", False), ("C", False), ("D", False)):
        v.set(st, diode=diode)
        for a in (None, 6, 16, 32, 63, 80):
            p.offer(a)
            rows.append([st, diode, a, settle(p), p.high_mv, p.low_mv, p.samples])
    # the generator stuck at -12 V (driver or +12 V supply failure): F
    v.set("B", diode=True)
    p.offer(None)
    pwm.duty_u16(0)
    rows.append(["stuck-12", True, None, settle(p), p.high_mv, p.low_mv, p.samples])
    out["rows"] = rows

elif scenario == "debounce":
    pwm, v, adc = line()
    v.set("B")  # plugged in before the station boots
    p = Pilot(pwm, adc)
    out["boot"] = p.state()
    # steady +12 V here (no PWM): no window is ever skipped, so the sequence
    # is exact; the debouncing is the same with PWM
    seq = []
    # a one-window glitch to C, then to A, then to the A/B gap: never reported
    for st in ("C", "B", "A", "B", "gap", "B", "B"):
        if st == "gap":
            v.set(resistance=5000)  # 10.1 V: between the A and B bands
        else:
            v.set(st)
        seq.append([st, p.state()])
    # a real change: reported on the second measurement
    v.set("C")
    seq.append(["C", p.state()])
    seq.append(["C", p.state()])
    seq.append(["C", p.state()])
    # flapping B/C every window is never C -> B reported as long as it flaps
    flap = []
    for i in range(8):
        v.set("B" if i % 2 else "C")
        flap.append(p.state())
    out["seq"] = seq
    out["flap"] = flap
    # a level that stays in a gap is an error once seen twice
    v.set(resistance=5000)
    out["gap"] = [p.state(), p.state(), p.state(), p.high_mv]
    # boot with a vehicle whose level never settles: E
    class _Flaky:
        def __init__(self):
            self.n = 0

        def read_u16(self):
            self.n += 1
            return (40000, 50000, 60000)[self.n // 8 % 3]
    q = Pilot(SimPWM(), _Flaky())
    out["unsettled_boot"] = q.state()
    out["skipped"] = p.skipped
    # offer() changes the PWM: the next window is skipped, then it goes on
    v.set("C")
    settle(p)
    p.offer(16)
    out["after_offer"] = [p.state(), p.skipped - out["skipped"], settle(p)]

elif scenario == "preempt":
    # The task is preempted in the middle of a window (an interrupt, a GC):
    # the window may have missed the short high phase at 10 % and is skipped.
    class _Stalling:
        def __init__(self, adc):
            self.adc = adc
            self.stall_at = None
            self.n = 0

        def read_u16(self):
            self.n += 1
            if self.n == self.stall_at:
                CLOCK.now += 1050
            return self.adc.read_u16()

    pwm, v, adc = line()
    st = _Stalling(adc)
    v.set("C")
    p = Pilot(pwm, st)
    p.offer(6)
    p.state()  # the window after offer()
    steps = []
    for _ in range(3):
        st.stall_at = st.n + 20
        steps.append([p.state(), p.skipped, p.gap_us, p.samples])
    st.stall_at = None
    steps.append([p.state(), p.skipped, p.gap_us, p.samples])
    steps.append([p.state(), p.skipped, p.gap_us, p.samples])
    out["stalls"] = steps
    # an ADC too slow for the 40 us low phase at 96 %: windows that missed it
    # are skipped and their lowest readings joined to the next window's
    v.set("A")
    p.offer(None)
    out["unplugged"] = [p.state() for _ in range(3)]
    adc.read_us = 50  # the slow end of an ESP32's read_u16
    p.offer(80)
    v.set("C")
    seen = [p.state() for _ in range(24)]
    out["slow"] = [seen, p.skipped, p.gap_us]
    # ... and a vehicle without its diode is still found out
    v.set("C", diode=False)
    seen = [p.state() for _ in range(24)]
    out["slow_nodiode"] = [seen, p.low_mv]

elif scenario == "timing":
    import asyncio
    pwm, v, adc = line()
    p = Pilot(pwm, adc)
    res = {}

    async def ticker(stall):
        last = time.ticks_us()
        while True:
            await asyncio.sleep_ms(0)
            now = time.ticks_us()
            stall[0] = max(stall[0], time.ticks_diff(now, last))
            last = now

    async def main():
        stall = [0]
        t = asyncio.create_task(ticker(stall))
        await asyncio.sleep_ms(10)
        for amps in (None, 6, 32, 80):
            v.set("C")
            p.offer(amps)
            times, samples = [], 0
            for _ in range(200):
                t0 = time.ticks_us()
                p.state()
                times.append(time.ticks_diff(time.ticks_us(), t0))
                samples += p.samples
                await asyncio.sleep_ms(1)
            times.sort()
            res[str(amps)] = {"max_us": times[-1], "p95_us": times[189], "median_us": times[100],
                              "samples": samples // 200}
        t.cancel()
        out["stall_us"] = stall[0]

    asyncio.run(main())
    out["calls"] = res

elif scenario == "boards":
    rows = []
    for name, stage in arg.items():
        with open("boards/%s/board.json" % name) as f:
            board = json.load(f)
        ctx = build.Context(board, None)
        for cid, c in enumerate(board["connectors"], 1):
            spec = c.get("pilot")
            if not spec:
                continue
            _ADC.stage = stage
            _ADC.vehicle = SimVehicle()
            p = build.pilot(cid, spec, ctx)
            pwm, adc = _PWM.made[-1], _ADC.made[-1]
            row = {"board": name, "cid": cid, "pwm_pin": pwm.pin, "adc_pin": adc.pin, "atten": adc.atten,
                   "first": list(pwm.first), "freq": pwm.freq(), "duty": pwm.duty_u16(), "boot": p.state()}
            states = []
            for st in "ABCDE":
                _ADC.vehicle.set(st)
                for a in (None, 16, 80):
                    p.offer(a)
                    states.append([st, a, settle(p), p.high_mv, p.low_mv])
            _ADC.vehicle.set("C", diode=False)
            p.offer(16)
            states.append(["C-nodiode", 16, settle(p), p.high_mv, p.low_mv])
            row["states"] = states
            rows.append(row)
    out["rows"] = rows
    _ADC.stage, _ADC.vehicle = (100000, 22000, 22000, 3300), SimVehicle()
    try:
        build.pilot(1, {"type": "pwm", "pwm": 1, "adc": 2, "atten": 7}, build.Context({}, None))
        out["bad_atten"] = "built"
    except ValueError as e:
        out["bad_atten"] = str(e)

elif scenario == "alloc":
    # the sampling loop allocates nothing: a call's allocation does not grow
    # with the number of reads (so no garbage collection starts in a window)
    import gc

    class _Fast:
        n = 0

        def read_u16(self):
            self.n += 1
            return 60000 if self.n & 1 else 6000

    rows = []
    for w in (300, 1100, 2000):
        p = Pilot(SimPWM(), _Fast(), window_us=w)
        p.offer(16)
        settle(p)
        # five calls, the most reads and the most bytes of them: a host that
        # preempts one window does not take the long window's reads away
        reads = spent = 0
        for _ in range(5):
            gc.collect()
            gc.disable()
            a = gc.mem_alloc()
            p.state()
            b = gc.mem_alloc()
            gc.enable()
            reads, spent = max(reads, p.samples), max(spent, b - a)
        rows.append([w, reads, spent])
    out["rows"] = rows

elif scenario == "errors":
    ctx = build.Context({"connectors": []}, None)
    out["none"] = [build.pilot(1, None, ctx), build.pilot(1, {}, ctx)]
    errors = []
    for spec in ({"type": "pwm", "pwm": 13, "adc": 36}, {"type": "dac"}):
        try:
            build.pilot(2, spec, ctx)
            errors.append("built")
        except ValueError as e:
            errors.append(str(e))
    out["errors"] = errors
    p = build.pilot(1, {"type": "sim_line", "window_us": 1200}, ctx)
    out["sim"] = [type(p).__name__, p.state(), type(p.vehicle).__name__]
    p.vehicle.set("B")
    p.offer(10)
    out["sim"] += [p.state(), settle(p, 20), p.offered()]

print("RESULT " + json.dumps(out))
