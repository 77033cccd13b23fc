# A simulated control pilot line for the unix port (hw/pilot.py's tests and
# {"type": "sim_line"} in a board file): imported only where it is used.
# SimPWM stands in for machine.PWM; SimADC for the ADC behind the pilot's
# measuring stage, computing what a real line carries: the EVSE's +/-12 V
# generator through its 1 kOhm source resistor, the vehicle of IEC 61851-1
# Table A.2 (a diode, then 2.74 kOhm in state B, 882 Ohm in C, 246 Ohm in D),
# the stage's own load (R1 into the R2/R3 bias), a 12-bit ADC with a little
# noise, and a few microseconds of edge on each PWM transition.
import time


class SimClock:
    # A microsecond clock that moves only when told (each SimADC read moves it
    # by the read's duration): tests put it in place of hw.pilot's `time`, so a
    # window's reads fall at exact, repeatable points of the PWM period, and a
    # busy host cannot preempt the measurement.
    def __init__(self):
        self.now = 0

    def ticks_us(self):
        return self.now

    def ticks_ms(self):
        return self.now // 1000

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.now += ms * 1000


class SimPWM:
    def __init__(self):
        self._freq = 0
        self._duty = 0
        self.changes = []  # (freq, duty_u16) after each change, for tests

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d
        self.changes.append((self._freq, d))

    def deinit(self):
        self._duty = 0


class SimVehicle:
    # resistance: the vehicle's load behind its diode, None: no vehicle;
    # diode: False for a vehicle (or a test box) without one; short: the
    # pilot shorted to PE (state E).
    OHMS = {"A": None, "B": 2740, "C": 882, "D": 246}

    def __init__(self):
        self.resistance = None
        self.diode = True
        self.short = False
        self.rev = 0

    def set(self, state=None, resistance=None, diode=None, short=None):
        if state is not None:
            self.short = state == "E"
            self.resistance = self.OHMS.get(state)
        if resistance is not None:
            self.resistance = resistance or None
        if diode is not None:
            self.diode = diode
        if short is not None:
            self.short = short
        self.rev += 1


class SimADC:
    def __init__(self, pwm, vehicle, r1=100000, r2=22000, r3=22000, vref_mv=3300, supply_mv=12000,
                 source_ohms=1000, diode_mv=700, noise_mv=2, edge_us=2, invert=False, clock=None, read_us=20):
        self.pwm = pwm
        self.vehicle = vehicle
        self.r1, self.vref = r1, vref_mv
        self.rth = r2 * r3 / (r2 + r3)
        self.vth = vref_mv * r3 / (r2 + r3)
        self.supply, self.rs, self.vd = supply_mv, source_ohms, diode_mv
        self.noise = noise_mv * 4095 // vref_mv  # in 12-bit counts
        self.edge = edge_us
        self.invert = invert
        self.reads = 0
        self.clock = clock  # a SimClock: each read takes read_us (+0..3 us) of it
        self.read_us = read_us
        self._x = 12345
        self._rev = -1

    def line_mv(self, drive_mv):
        # The pilot line's level while the generator drives drive_mv.
        v = self.vehicle
        if v.short:
            return 0.0
        rm = self.r1 + self.rth
        g = 1 / self.rs + 1 / rm
        i = drive_mv / self.rs + self.vth / rm
        if v.resistance is None:
            return i / g
        if not v.diode:
            return i / (g + 1 / v.resistance)
        on = (i + self.vd / v.resistance) / (g + 1 / v.resistance)
        return on if on > self.vd else i / g

    def _counts(self, drive_mv):
        vn = self.vth + (self.line_mv(drive_mv) - self.vth) * self.rth / (self.r1 + self.rth)
        return max(0, min(4095, int(vn * 4095 / self.vref + 0.5)))

    def _level(self):
        if self._rev != self.vehicle.rev:  # recomputed only when the vehicle moves
            self._rev = self.vehicle.rev
            self._hi = self._counts(self.supply)
            self._lo = self._counts(-self.supply)
        hi, lo = self._hi, self._lo
        d = self.pwm._duty
        if self.invert:
            d = 65535 - d
        if d >= 65535:
            c = hi
        elif d <= 0:
            c = lo
        else:
            period = 1000000 // (self.pwm._freq or 1000)
            t = (self.clock.now if self.clock else time.ticks_us()) % period
            high = period * d // 65535
            e = self.edge
            if t < high:
                c = hi if t >= e else lo + (hi - lo) * t // e
            else:
                t -= high
                c = lo if t >= e else hi - (hi - lo) * t // e
        self._x = (self._x * 1103515245 + 12345) & 0x3FFFFFFF
        if self.noise:
            c += (self._x >> 12) % (2 * self.noise + 1) - self.noise
            c = 0 if c < 0 else 4095 if c > 4095 else c
        if self.clock:
            self.clock.now += self.read_us + (self._x >> 8) % 4
        self.reads += 1
        return c

    def read_u16(self):
        c = self._level()
        return (c << 4) | (c >> 8)  # 12 bits stretched to 16, as the rp2 port does

    def read_uv(self):
        return self._level() * self.vref * 1000 // 4095
