# Simulated hardware for the unix board: a contactor that logs its state, a
# meter whose energy register integrates the vehicle's load while the contactor
# is closed, and the vehicle's plug. The station model uses them exactly like
# the real ports.
import os
import time
import log


class SimContactor:
    def __init__(self, connector_id):
        self.connector_id = connector_id
        self.closed = False

    def close(self):
        if not self.closed:
            self.closed = True
            log.info("contactor", "connector %d: contactor closed, power on" % self.connector_id)

    def open(self):
        if self.closed:
            self.closed = False
            log.info("contactor", "connector %d: contactor open, power off" % self.connector_id)


class SimLock:
    # A cable lock; `jammed` (console: lock <c> jam) makes unlocking fail, as a
    # stuck latch would.
    def __init__(self, connector_id):
        self.connector_id = connector_id
        self.locked = False
        self.jammed = False

    def lock(self):
        if not self.locked:
            self.locked = True
            log.info("lock", "connector %d: cable locked" % self.connector_id)

    def unlock(self):
        # -> True when the cable is free
        if self.jammed:
            log.warn("lock", "connector %d: the cable lock is stuck" % self.connector_id)
            return False
        if self.locked:
            self.locked = False
            log.info("lock", "connector %d: cable unlocked" % self.connector_id)
        return True


class SimMeter:
    # A three-phase meter. `load` is the current the vehicle would draw (A per
    # phase); the register persists in a host file so it survives restarts,
    # as a real meter's does.
    def __init__(self, contactor, state_file=None, phases=3, volts=230.0):
        self.contactor = contactor
        self.state_file = state_file
        self.phases = phases
        self.volts = volts
        self.load = 0.0
        self.offered = None  # A the station offers (SimPilot); None: no limit known, the load is drawn
        self.energy = 0.0  # Wh
        # what read() delivers: measurand -> number of phases (0: one total value)
        self.measurands = {"Energy.Active.Import.Register": 0, "Power.Active.Import": 0,
                           "Current.Import": phases, "Voltage": phases, "Frequency": 0}
        self._saved = 0
        self._last = time.ticks_ms()
        if state_file:
            try:
                with open(state_file) as f:
                    self.energy = float(f.read())
                    self._saved = int(self.energy)
            except (OSError, ValueError):
                pass

    async def read(self):
        now = time.ticks_ms()
        dt = time.ticks_diff(now, self._last) / 3600000  # hours
        self._last = now
        amps = self.load if self.offered is None else min(self.load, self.offered)
        if not self.contactor.closed:
            amps = 0.0
        power = amps * self.volts * self.phases
        self.energy += power * dt
        if self.state_file and int(self.energy) != self._saved:
            self._saved = int(self.energy)
            # temp file + rename: a kill mid-write leaves the old register, as
            # a real meter never loses its count
            with open(self.state_file + ".tmp", "w") as f:
                f.write(str(self.energy))
            os.rename(self.state_file + ".tmp", self.state_file)
        return {
            "Energy.Active.Import.Register": self.energy,
            "Power.Active.Import": power,
            "Current.Import": (amps,) * self.phases,
            "Voltage": (self.volts,) * self.phases,
            "Frequency": 50.0,
        }


class SimPlug:
    # The simulated vehicle as a plug input sees it: plugged in or not, and
    # the current it asks for (its meter's load). Both are kept in a host file,
    # so after a restart (Reset, a power cut) the vehicle is still there, as a
    # real station's plug signal would show it. The console moves it.
    def __init__(self, meter, state_file=None):
        self.meter = meter
        self.state_file = state_file
        self.state = False
        if state_file:
            try:
                with open(state_file) as f:
                    w = f.read().split()
                self.state = w[0] == "1"
                meter.load = float(w[1])
            except (OSError, ValueError, IndexError):
                pass

    def plugged(self):
        return self.state

    def set(self, plugged):
        self.state = plugged
        self.save()

    def save(self):
        if self.state_file:
            with open(self.state_file + ".tmp", "w") as f:
                f.write("%d %s" % (self.state, self.meter.load))
            os.rename(self.state_file + ".tmp", self.state_file)


class SimPilot:
    # The simulated vehicle's side of the control pilot: it draws at most the
    # current offered (its meter's `offered`). It senses no state: the
    # simulated plug (SimPlug) says whether the vehicle is there.
    senses = False

    def __init__(self, meter):
        self.meter = meter

    def offer(self, amps):
        self.meter.offered = amps

    def offered(self):
        return self.meter.offered

    def state(self):
        return None
