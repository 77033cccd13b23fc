# The IEC 61851-1 control pilot on boards that generate it themselves: a 1 kHz
# PWM output through a +/-12 V driver and a 1 kOhm series resistor onto the
# pilot line (the current offered, Annex A), and an ADC watching the line
# through a divider with a bias (the vehicle's state, from the levels its
# resistors and diode pull the line to).
#
# The measuring stage (README, "Board pins"): pilot -- R1 -- ADC pin, and at the
# ADC pin R2 to 3.3 V, R3 to ground (R2 = R3: a 1.65 V bias), plus a Schottky
# clamp to the ADC's rails and at most ~100 pF. With Rt = R2 || R3:
#   adc_mv   = pilot_mv / divider + offset_mv
#   divider  = (R1 + Rt) / Rt                 (100k, 22k, 22k: 10.09)
#   offset   = 1650 * R1 / (R1 + Rt)  mV      (100k, 22k, 22k: 1486.5 mV,
#                                              the ADC's level at 0 V pilot)
# so pilot_mv = (adc_mv - offset_mv) * divider, adc_mv = read_u16 * full_scale_mv / 65535
# (or read_uv / 1000 where the port calibrates, as the ESP32's read_uv does).
#
# Choices where IEC 61851-1 leaves one (README, "Board pins", control pilot):
# - Bands of Table A.4, +/-1 V around 12/9/6/3 V, 0 V +/-1 V for E, -12 V +/-1 V
#   for F. A level between two bands (10-11 V, 7-8 V, 4-5 V, 1-2 V) or above
#   13 V belongs to no state: it is "E" (an error), so an unknown level never
#   lets charging start or go on; a high level at or below -11 V is "F".
# - With PWM running the low level must be in the -12 V band, in every state
#   (a missing vehicle diode, or a dead -12 V supply in state A): else "F".
# - Debouncing: each state() call measures one window and a new state is
#   reported once two calls in a row measured it. A single odd window (an edge,
#   a glitch, a vehicle switching S2 mid-window) is never reported. The station
#   must poll often enough for its reaction time: at 50 ms a change is reported
#   within 50-100 ms. Windows that prove nothing are skipped (state()).
# - Currents are rounded down to the PWM's resolution (never more than offered);
#   51 A < I <= 52.5 A gives 84.4-85 % (Annex A's second formula), which the
#   vehicle reads as at most 51 A.
import time
from micropython import const
import log

_PERIOD_US = const(1000)  # 1 kHz
_STEADY_READS = const(8)  # no PWM: a few reads of the steady level
_U16 = const(65535)
_MAX_SKIPS = const(5)  # windows skipped in a row before one counts anyway


def duty_for(amps):
    # IEC 61851-1 Annex A (the EVSE's duty cycle table): the duty in percent the EVSE
    # signals for `amps`, or None for no PWM (steady +12 V: no charging allowed).
    if amps is None or amps < 6:
        return None
    if amps > 80:
        amps = 80
    if amps <= 51:
        return amps / 0.6
    return amps / 2.5 + 64


# (lowest mV, highest mV, state) of Table A.4, most positive first
_BANDS = ((11000, 13000, "A"), (8000, 10000, "B"), (5000, 7000, "C"), (2000, 4000, "D"), (-1000, 1000, "E"))


def state_for(high_mv, low_mv=None):
    # The state from the pilot's levels in millivolts (signed, at the pilot line);
    # low_mv: the level of the PWM's low phase, None without PWM (steady).
    if high_mv <= -11000:
        return "F"  # the EVSE itself at -12 V (or its +12 V supply is gone)
    for lo, hi, s in _BANDS:
        if lo <= high_mv <= hi:
            break
    else:
        return "E"  # between two bands or over range: no state, an error
    if s != "E" and low_mv is not None and not (-13000 <= low_mv <= -11000):
        return "F"  # with PWM: the vehicle's diode is missing (or -12 V is)
    return s


class Pilot:
    senses = True  # state() reads the vehicle's state from the line
    # pwm: machine.PWM-like (freq(), duty_u16()); adc: machine.ADC-like
    # (read_u16(), or read_uv() with uv=True). invert: the driver turns a high
    # MCU pin into -12 V. window_us: how long a PWM-mode measurement samples
    # (a little more than one period, so each phase is seen at least once).
    def __init__(self, pwm, adc, divider=10.09, offset_mv=1486.5, full_scale_mv=3300, invert=False,
                 uv=False, window_us=1100, cid=0):
        self._pwm = pwm
        self._read = adc.read_uv if uv else adc.read_u16
        # pilot_mv = raw * _k - _c
        if uv:
            self._k = divider / 1000
        else:
            self._k = divider * full_scale_mv / _U16
        self._c = offset_mv * divider
        self._invert = invert
        self._window = window_us
        self._name = "connector %d: pilot" % cid if cid else "pilot"
        self._amps = None
        self._duty = None
        self.high_mv = self.low_mv = 0  # the levels of the last window that counted
        self.samples = self.gap_us = 0  # the last window's reads, its longest hole between two
        self.skipped = 0  # windows skipped since boot
        self._skips = 0
        self._carry = None  # the lowest reading of skipped windows, for the diode check
        self._hole_hi = self._hole_lo = _PERIOD_US
        self._fresh = False
        self.offer(None)
        # At boot (before the loop runs) the first state is taken when two
        # measurements agree, so a vehicle already plugged in is never
        # reported as "A" for a poll. The PWM takes the steady level at the end
        # of its period: wait for it (a pull-down held the pilot at -12 V).
        time.sleep_ms(2)
        last = None
        for _ in range(8):
            self.high_mv, self.low_mv = self._measure()[2:]
            s = self._classify()
            if s == last:
                break
            last = s
        else:
            s = "E"  # a level that does not settle is an error
        self._state = self._seen = s
        self._fresh = False
        log.info("pilot", "%s: state %s (%s)" % (self._name, s, self._levels()))

    def offer(self, amps):
        # Signals `amps` to the vehicle: 1 kHz PWM at duty_for(amps), or a
        # steady +12 V (duty 100 %) when that is None.
        duty = duty_for(amps)
        self._amps = None if duty is None else min(amps, 80)
        self._duty = duty
        u = _U16 if duty is None else int(duty * _U16 / 100)  # rounded down
        if self._invert:
            u = _U16 - u
        self._pwm.freq(1000)
        self._pwm.duty_u16(u)
        if duty is not None:
            # A hole this long between two samples may have missed the high
            # (low) plateau: its length less a few us for the edges.
            t = int(_PERIOD_US * duty / 100)
            self._hole_hi = t - 5
            self._hole_lo = _PERIOD_US - t - 5
        # the PWM takes the new duty at the end of its period: the next window
        # may still see the old one
        self._fresh = True

    def offered(self):
        return self._amps

    def duty(self):
        return self._duty

    def state(self):
        # "A".."F", debounced: one measurement (at most window_us plus one read)
        # per call; a new state is reported when two measurements in a row saw
        # it. Windows that prove nothing are skipped (the state stays):
        # - the first after offer() changed the PWM;
        # - one with a hole between two samples longer than the high phase (the
        #   task was preempted: an interrupt, a garbage collection), so the high
        #   level may have been missed;
        # - one whose low reading is not in the -12 V band while a hole was
        #   longer than the low phase (at 85-96 % duty the low phase lasts
        #   150-40 us: a slow ADC may step over it). Its lowest reading is kept
        #   and joined to the next window's, so a few windows together find the
        #   low plateau.
        # After _MAX_SKIPS skips in a row the window counts all the same: a
        # too slow ADC then shows as a state (F), never as a frozen one.
        hi, lo, hi_mv, lo_mv = self._measure()
        if self._fresh:
            self._fresh = False
            self._carry = None
            self.skipped += 1
            return self._state
        if self._duty is not None:
            if self._carry is not None and self._carry < lo:
                lo = self._carry
                lo_mv = int(lo * self._k - self._c)
            gap = self.gap_us
            if gap >= self._hole_hi or (gap >= self._hole_lo and lo_mv > -11000):
                self._carry = lo
                self.skipped += 1
                self._skips += 1
                if self._skips <= _MAX_SKIPS:
                    return self._state
        self._skips = 0
        self._carry = None
        self.high_mv, self.low_mv = hi_mv, lo_mv
        s = self._classify()
        if s == self._seen and s != self._state:
            old = self._state
            self._state = s
            msg = "%s: state %s -> %s (%s)" % (self._name, old, s, self._levels())
            (log.warn if s in "EF" else log.info)("pilot", msg)
        self._seen = s
        return self._state

    def _levels(self):
        if self._duty is None:
            return "%.1f V" % (self.high_mv / 1000)
        return "%.1f V / %.1f V at %.1f %%" % (self.high_mv / 1000, self.low_mv / 1000, self._duty)

    def _classify(self):
        return state_for(self.high_mv, None if self._duty is None else self.low_mv)

    def _measure(self):
        # -> the highest and lowest reading of one window, raw and in pilot
        # millivolts; sets samples and gap_us
        read = self._read
        ticks_us, ticks_diff = time.ticks_us, time.ticks_diff
        t0 = last = ticks_us()
        hi = lo = read()
        n = 1
        gap = 0
        if self._duty is None:
            while n < _STEADY_READS:
                v = read()
                if v > hi:
                    hi = v
                elif v < lo:
                    lo = v
                n += 1
        else:
            # Sample as fast as the ADC goes for a little more than a period:
            # the highest and lowest readings are the two plateaus (a reading
            # on an edge lies between them).
            w = self._window
            while True:
                t = ticks_us()
                d = ticks_diff(t, last)
                if d > gap:
                    gap = d
                if ticks_diff(t, t0) >= w:
                    break
                last = t
                v = read()
                if v > hi:
                    hi = v
                elif v < lo:
                    lo = v
                n += 1
        self.samples = n
        self.gap_us = gap
        k, c = self._k, self._c
        return hi, lo, int(hi * k - c), int(lo * k - c)
