"""Fault injection: charging sessions while everything that can fail, fails.

A seeded harness drives one charge point (the firmware on the unix port, one DATA
dir for its whole life) through many charging sessions against the dev CSMS, with
the link going through tools/netproxy.py. At points chosen by the seed it:

  kill        SIGKILLs the firmware at a random moment of a step and starts it again
  kill@frame  SIGKILLs it the instant a chosen frame shows in its log (our
              StartTransaction / MeterValues / StopTransaction going out, or the
              CSMS's answer to a Start or Stop coming in)
  flashcut    kills it, starts it with FLASH_CUT_AFTER_WRITES=N (the emulated flash
              drops every block write after the N-th: a power cut inside a LittleFS
              write); the "power" goes at the cut (killed at once) or the process
              runs on a few seconds on dead flash (it must not crash) before it is
              killed; then it starts normally
  csms        stops the CSMS (gracefully or like a crash) and starts it again on the
              same port after a while; the CSMS keeps its record, like a database
  cut         resets the TCP connection on both sides (RST)
  halfopen    the link goes silent in both directions without a close: the firmware
              must notice by itself (WebSocket ping) and reconnect
  noanswer    the CSMS processes a StartTransaction / MeterValues / StopTransaction
              but its answer is lost: the firmware times out (MessageTimeout) and
              sends it again; the CSMS must recognise the repeat

At the end every transaction the harness started must be in the CSMS's record
exactly once with the right meterStart and meterStop, and every periodic meter
value the firmware sampled while it was alive must have reached the CSMS.

What "started", "sampled" and "stopped" mean comes from the firmware's own log:
  "transaction started for TAG at X Wh"       a transaction; it is committed (must
      reach the CSMS) once the contactor closed or its StartTransaction went out;
      a kill between the log line and that point may lose it (reported as uncertain)
  "meter: connector N: X Wh, Y W (Sample.Periodic)"   a sample that must arrive
  "transaction stopped (REASON), D Wh delivered"      meterStop = meterStart + D;
      committed once a status line or the StopTransaction followed, otherwise a
      PowerLoss stop after the restart is accepted too
  "the transaction of TAG was interrupted (PowerLoss), ending it at X Wh"  X must be
      the meter register at the power loss (DATA/meter<N>.txt, read after the kill)
Lines after an emulated flash cut ("emulated power cut") are what a dead board
would not have done: not required, and tolerated if they reached the CSMS.

Environment: FAULT_SEED (default: random, printed), FAULT_SESSIONS (default 6),
FAULT_SOAK=1 runs the long test (FAULT_SESSIONS default 40; `make soak`),
FAULT_FW_TREE=<dir> runs the firmware of another checkout, FW_ECHO=1 echoes its log.
"""
import json
import os
import random
import re
import subprocess
import threading
import time
from collections import Counter, defaultdict
from itertools import islice
from pathlib import Path

import pytest

from conftest import ROOT, Firmware, mp_env
from dev_csms import DevCSMS
from netproxy import NetProxy
import soak_ops
from soak_ops import OP_KINDS, Ops

CP = "CP001"
PING = 2  # WebSocketPingInterval: half-open is noticed after 3 silent intervals
SETTINGS = [("MeterValueSampleInterval", 1), ("ClockAlignedDataInterval", 0),
            ("AllowOfflineTxForUnknownId", "true"), ("WebSocketPingInterval", PING),
            ("TransactionMessageRetryInterval", 1), ("MessageTimeout", 10)]
KINDS = ("kill", "kill@frame", "flashcut", "csms", "noanswer", "cut", "halfopen") + OP_KINDS
BETWEEN = ("fw-download", "fw-install", "fw-firstboot", "profile", "cert")  # run between two sessions
NOANSWER = {"card": "StartTransaction", "charge": "MeterValues", "stop": "StopTransaction"}

# firmware log lines
RX_START = re.compile(r"station: connector (\d+): transaction started for (\S+) at (\d+) Wh")
RX_STOP = re.compile(r"station: connector (\d+): transaction stopped \((\w+)\), (-?\d+) Wh delivered")
RX_SAMPLE = re.compile(r"meter: connector (\d+): (-?\d+) Wh, -?\d+ W \(Sample\.Periodic\)")
RX_CONTACTOR = re.compile(r"contactor: connector (\d+): contactor closed")
RX_STATUS = re.compile(r"station: connector (\d+): \w+ -> ")
RX_INTERRUPTED = re.compile(r"connector (\d+): the transaction of (\S+) was interrupted \((\w+)\), ending it at (-?\d+) Wh")
RX_FRAME_OUT = re.compile(r"ocpp: >> (\[2,.*)$")
RX_CUT = re.compile(r"flash: emulated power cut")
RX_THINNED = re.compile(r"periodic meter value dropped")
RX_DEAD_LINK = re.compile(r"connection is dead|connection to the CSMS lost")

FRAME_TRIGGERS = {
    # step -> [(description, regex)]
    "card": [(">> StartTransaction", r'ocpp: >> \[2, ?"[^"]*", ?"StartTransaction"'),
             ("<< StartTransaction answer", r'ocpp: << \[3,\s*"[^"]*",\s*\{"transactionId"')],
    "charge": [(">> MeterValues", r'ocpp: >> \[2, ?"[^"]*", ?"MeterValues"')],
    "stop": [(">> StopTransaction", r'ocpp: >> \[2, ?"[^"]*", ?"StopTransaction"'),
             ("<< StopTransaction answer", r'ocpp: << \[3,\s*"[^"]*",\s*\{"idTagInfo"')],
}


class Died(Exception):
    """The firmware process is gone (killed by a fault, or by itself)."""


class Restarted(Exception):
    """A fault restarted the firmware itself (flash cut run)."""


class Life:
    """One run of the firmware process: from start to kill or exit."""

    def __init__(self, n, env, t0):
        self.n = n
        self.env = env
        self.lines = []
        self.times = []  # when each line was read (Unix time)
        self.t_start = time.time() - t0
        self.cut_at = None  # index of the emulated power cut line
        self.on_cut = None  # "kill" or seconds to run on after the cut
        self.killed = None  # why the harness killed it
        self.exit = None
        self.registers = {}  # connector -> meter register (Wh, float) read after death
        self.triggers = []  # [description, compiled regex, count left]
        self.proc = None
        self.done = threading.Event()

    def live_end(self):
        return self.cut_at if self.cut_at is not None else len(self.lines)

    def tail(self, n=12, match=None):
        lines = [ln for ln in self.lines if match is None or match(ln)]
        return "\n".join("      | " + ln for ln in lines[-n:])


class Station:
    """The firmware across restarts, with kills that can fire from the log reader."""

    def __init__(self, root, data, url, t0):
        self.root = Path(root)
        self.data = Path(data)
        self.cmd = Firmware(data, url, CP).cmd
        self.t0 = t0
        self.lives = []
        self.life = None
        self._lock = threading.RLock()
        self.seen = 0

    # ---- process ----------------------------------------------------------------
    def start(self, env=None):
        self.data.mkdir(parents=True, exist_ok=True)
        life = Life(len(self.lives) + 1, dict(env or {}), self.t0)
        e = mp_env()
        e.update(life.env)
        life.proc = subprocess.Popen(self.cmd, cwd=self.root, env=e, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        with self._lock:
            self.lives.append(life)
            self.life = life
            self.seen = 0
        threading.Thread(target=self._pump, args=(life,), daemon=True).start()
        return life

    def _pump(self, life):
        echo = os.environ.get("FW_ECHO")
        for line in life.proc.stdout:
            line = line.rstrip("\n")
            if echo:
                print("FW%d| %s" % (life.n, line), flush=True)
            with self._lock:
                life.lines.append(line)
                life.times.append(time.time())
                if life.killed:
                    continue
                if life.cut_at is None and RX_CUT.search(line):
                    life.cut_at = len(life.lines) - 1
                    if life.on_cut == "kill":
                        self._kill(life, "the emulated power cut")
                    elif life.on_cut is not None:
                        threading.Timer(life.on_cut, self.kill, args=(life, "%.1f s after the emulated power cut"
                                                                      % life.on_cut)).start()
                for t in list(life.triggers):
                    if t[1].search(line):
                        t[2] -= 1
                        if t[2] <= 0:
                            life.triggers.remove(t)
                            if len(t) > 3 and t[3]:
                                threading.Timer(t[3], self.kill, args=(life, "on " + t[0])).start()
                            else:
                                self._kill(life, "on " + t[0])
                            break
        life.proc.wait()
        with self._lock:
            if life.exit is None:
                life.exit = life.proc.returncode
                if not life.registers:
                    life.registers = self.registers()
        life.done.set()

    def _kill(self, life, why):
        # SIGKILL: the power goes. Called with the lock held.
        if life.killed or life.proc.poll() is not None:
            return False
        life.killed = why
        life.proc.kill()
        life.proc.wait(5)
        life.exit = life.proc.returncode
        life.registers = self.registers()
        return True

    def kill(self, life=None, why="harness"):
        with self._lock:
            return self._kill(life or self.life, why)

    def registers(self):
        regs = {}
        for c in (1, 2):
            p = self.data / ("meter%d.txt" % c)
            try:
                regs[c] = float(p.read_text())
            except FileNotFoundError:
                regs[c] = 0.0
            except ValueError:
                regs[c] = None  # torn: the sim meter writes its register in place
        return regs

    def alive(self):
        return self.life is not None and self.life.proc.poll() is None and not self.life.killed

    def arm(self, description, pattern, count=1, delay=0.0):
        # kill the firmware `delay` s after the count-th line matching pattern
        with self._lock:
            self.life.triggers.append([description, re.compile(pattern), count, delay])

    def disarm(self):
        with self._lock:
            for life in self.lives:
                life.triggers = []

    # ---- talking to it ------------------------------------------------------------------
    def send(self, command):
        if not self.alive():
            raise Died()
        try:
            self.life.proc.stdin.write(command + "\n")
            self.life.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise Died()

    def wait_line(self, pattern, timeout=20):
        rx = re.compile(pattern)
        life = self.life
        end = time.time() + timeout
        while True:
            lines = life.lines
            for i in range(self.seen, len(lines)):
                if rx.search(lines[i]):
                    self.seen = i + 1
                    return lines[i]
            self.seen = len(lines)
            if not self.alive():
                raise Died()
            if time.time() > end:
                raise AssertionError("firmware (life %d) never logged %r; last lines:\n%s"
                                     % (life.n, pattern, life.tail(30)))
            time.sleep(0.02)

    def sleep(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            if not self.alive():
                raise Died()
            time.sleep(min(0.05, max(0, end - time.time())))


class Harness:
    def __init__(self, seed, sessions, workdir, root=ROOT):
        self.seed = seed
        self.sessions = sessions
        self.rng = random.Random(seed)
        self.t0 = time.time()
        self.csms = DevCSMS(heartbeat_interval=300)
        self.csms.start_in_thread()
        self.csms_up = True
        self.proxy = NetProxy("127.0.0.1", self.csms.port).start()
        self.fw = Station(root, Path(workdir) / CP, "ws://127.0.0.1:%d" % self.proxy.port, self.t0)
        self.cp = CP
        self.ops = Ops(self, workdir)
        self.faults = Counter()
        self.fault_log = []  # (time, session, text)
        self.findings = []  # problems seen while running (not from the final record)
        self.plugged = {1: False, 2: False}
        self.amps = {1: 0, 2: 0}
        self.tag_n = 0
        self.deck = []
        self.rounds = 0
        self.threads = []
        self.timers = []
        self.half_open_waits = []
        self._csms_lock = threading.Lock()

    def now(self):
        return time.time() - self.t0

    def note(self, session, text):
        self.fault_log.append((self.now(), session, text))
        if os.environ.get("FAULT_VERBOSE") or os.environ.get("FW_ECHO"):
            print("[%6.1f s] session %s: %s" % (self.now(), session, text), flush=True)

    # ---- setup ------------------------------------------------------------------------
    def boot(self):
        fw = self.fw
        fw.start()
        fw.wait_line(r"accepted this charge point", 30)
        for key, value in SETTINGS:
            fw.send("set %s %s" % (key, value))
            fw.wait_line(r"set %s: Accepted" % key)

    def restart(self, env=None, session=None):
        # After a kill: the same DATA dir, the same simulated cars.
        fw = self.fw
        if fw.alive():
            fw.kill(why="restart")
        life = fw.start(env)
        if env:
            self.note(session, "life %d starts with %s" % (life.n, " ".join("%s=%s" % kv for kv in env.items())))
        fw.wait_line(r"boot: charge point", 15)
        for c in (1, 2):
            if self.plugged[c]:
                fw.send("load %d %s" % (c, self.amps[c]))
                fw.send("plug %d" % c)
            else:  # the simulator's own record may still say plugged: a kill raced its unplug
                fw.send("unplug %d" % c)
        return life

    # ---- faults -------------------------------------------------------------------------
    def pick_faults(self, rng):
        # Every kind comes up in turn (a shuffled deck), so a short run covers them all;
        # sessions without a fault only once every kind has had its turn.
        first = self.rounds == 0 or (self.rounds == 1 and bool(self.deck))  # a short run covers every kind
        n = 1 + (rng.random() < 0.4 or first)
        if self.rounds > 1 and rng.random() < 0.1:
            n = 0
        out = []
        steps = ["plug", "card", "charge", "stop", "unplug"]
        for _ in range(n):
            if not self.deck:
                self.deck = list(KINDS)
                rng.shuffle(self.deck)
                self.rounds += 1
            kind = self.deck.pop()
            if kind == "kill@frame":
                step = rng.choice(sorted(FRAME_TRIGGERS))
            elif kind == "noanswer":
                step = rng.choice(sorted(NOANSWER))
            elif kind in ("kill", "flashcut"):
                step = rng.choice(["card", "charge", "charge", "stop"])
            elif kind in BETWEEN:
                step = "between"
            elif kind == "upload":
                step = "charge"
            else:
                step = rng.choice(steps[1:])
            if any(f["step"] == step for f in out):
                self.deck.append(kind)  # its turn comes in the next session
                continue
            out.append({"kind": kind, "step": step})
        return out

    def inject(self, f, k, dur, rng):
        # Called as step f["step"] begins; rng: the session's plan (the same for a seed).
        fw = self.fw
        kind = f["kind"]
        self.faults[kind] += 1
        step = f["step"]
        window = {"card": 0.6, "charge": dur, "stop": 0.5, "plug": 0.3, "unplug": 0.3}[step]
        if kind == "kill":
            delay = rng.uniform(0, window)
            life = fw.life
            self.note(k, "kill in %.2f s during %s (life %d)" % (delay, step, life.n))
            self._timer(delay, fw.kill, life, "timed kill during " + step)
        elif kind == "kill@frame":
            desc, pattern = rng.choice(FRAME_TRIGGERS[step])
            count = rng.randint(1, 3) if "MeterValues" in desc else 1
            self.note(k, "kill on %s #%d (life %d)" % (desc, count, fw.life.n))
            fw.arm(desc, pattern, count)
        elif kind == "flashcut":
            n = rng.randint(0, 60)
            mode = "kill" if rng.random() < 0.5 else round(rng.uniform(0.5, 3.0), 1)
            self.note(k, "kill, then flash cut after %d block writes (%s)" % (
                n, "power gone at the cut" if mode == "kill" else "runs on %.1f s on dead flash" % mode))
            fw.kill(why="before a flash cut run")
            life = self.restart({"FLASH_CUT_AFTER_WRITES": str(n)}, k)
            with fw._lock:
                life.on_cut = mode
                if life.cut_at is not None and mode == "kill":
                    fw._kill(life, "the emulated power cut")
            # The power goes anyway a little later if the cut never came.
            threading.Timer(rng.uniform(4, 9), fw.kill, args=(life, "flash cut run over")).start()
            raise Restarted()
        elif kind == "csms":
            delay = rng.uniform(0, window)
            down = rng.uniform(0.5, 4)
            abrupt = rng.random() < 0.5
            self.note(k, "CSMS %s in %.2f s, down %.1f s" % ("crash" if abrupt else "shutdown", delay, down))
            self._spawn(self._csms_restart, delay, down, abrupt)
        elif kind == "noanswer":
            action = NOANSWER[step]
            self.note(k, "the CSMS will not answer the next %s" % action)
            self.csms.silent[action] = 1
        elif kind == "cut":
            delay = rng.uniform(0, window)
            self.note(k, "link cut (RST) in %.2f s" % delay)
            self._spawn(lambda d: (time.sleep(d), self.proxy.cut()), delay)
        elif kind == "upload":
            self._spawn(self.ops.upload, k, random.Random(rng.random()))
        elif kind == "halfopen":
            delay = rng.uniform(0, window)
            refuse = rng.random() < 0.7
            deliver = rng.random() < 0.3
            self.note(k, "link half-open in %.2f s (new connections %s, heal %s)" % (
                delay, "refused" if refuse else "black-holed", "delivering held data" if deliver else "with reset"))
            self._spawn(self._half_open, k, delay, refuse, deliver, rng.uniform(2, 6))

    def _timer(self, delay, fn, *args):
        t = threading.Timer(delay, fn, args=args)
        t.daemon = True
        t.start()
        self.timers.append(t)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _csms_restart(self, delay, down, abrupt):
        time.sleep(delay)
        with self._csms_lock:
            self.csms_up = False
            self.csms.stop_thread(abrupt)
            time.sleep(down)
            self.csms.restarts += 1
            self.csms.start_in_thread(port=self.csms.port)
            self.csms_up = True

    def _half_open(self, k, delay, refuse, deliver, idle_for):
        time.sleep(delay)
        fw = self.fw
        life = fw.life
        mark = len(life.lines)
        t = time.time()
        held = self.proxy.half_open(refuse)
        if not held:  # the firmware is between connections (backoff): only its next attempts hit the dead link
            self.note(k, "half-open while no connection was up: reconnect attempts %s" % (
                "refused" if refuse else "black-holed"))
            time.sleep(idle_for)
            self.proxy.heal(deliver)
            return
        limit = 3 * PING + 12
        detected = None
        while time.time() - t < limit:
            if fw.life is not life or life.killed or life.done.is_set():
                # the firmware died or was restarted meanwhile (a flash cut run's end): no link to watch
                detected = "restarted"
                break
            if any(RX_DEAD_LINK.search(ln) for ln in life.lines[mark:]):
                detected = time.time() - t
                break
            time.sleep(0.1)
        self.proxy.heal(deliver)
        if detected is None:
            self.findings.append("half-open link (session %s, life %d) not detected by the firmware within %d s"
                                 % (k, life.n, limit))
            self.note(k, "half-open NOT detected within %d s" % limit)
        elif detected != "restarted":
            self.half_open_waits.append(detected)
            self.note(k, "half-open detected after %.1f s" % detected)

    def join_faults(self):
        for t in self.threads:
            t.join(30)
        self.threads = []

    # ---- one charging session ---------------------------------------------------------
    def new_tag(self, k):
        self.tag_n += 1
        return "F%04d-%d-%d" % (self.seed % 10000, k, self.tag_n)

    def session(self, k):
        # The plan of a session (parameters, faults) depends on the seed only; what the
        # firmware does meanwhile (and so the timing) varies from run to run.
        rng, fw = random.Random(self.seed * 7919 + k), self.fw
        c = rng.choice((1, 2))
        amps = rng.choice((10, 16, 24, 32))
        dur = rng.uniform(3, 8)
        stop_by = rng.choice(("card", "unplug"))
        faults = self.pick_faults(rng)
        self.note(k, "connector %d, %d A, %.1f s, stop by %s; faults: %s" % (
            c, amps, dur, stop_by, ", ".join("%s@%s" % (f["kind"], f["step"]) for f in faults) or "none"))
        st = {"tag": None, "left": dur}
        for f in faults:  # the CSMS's operations between sessions, with their faults
            if f["step"] == "between":
                f["done"] = True
                self.faults[f["kind"]] += 1
                self.ops.run(f["kind"], k, rng)
        steps = ["plug", "card", "charge", "stop", "unplug"]
        i = 0
        restarts = 0
        while i < len(steps):
            step = steps[i]
            try:
                for f in faults:
                    if f["step"] == step and not f.get("done"):
                        f["done"] = True
                        self.inject(f, k, dur, rng)
                self.step(step, c, amps, stop_by, st, k)
                i += 1
            except (Died, Restarted) as e:
                restarts += 1
                if restarts > 6:
                    raise AssertionError("session %d: the firmware keeps dying; last lines:\n%s"
                                         % (k, fw.life.tail(30)))
                if isinstance(e, Died):
                    life = fw.life
                    life.done.wait(5)
                    if not life.killed and life.exit != 75:  # 75: its own restart (tools/unix_loop.sh)
                        self.findings.append("firmware life %d exited by itself (code %s) during %s of session %d:"
                                             "\n%s" % (life.n, life.exit, step, k, life.tail(20)))
                    self.note(k, "firmware died during %s (%s); restarting" % (step, life.killed or "by itself"))
                    self.restart(session=k)
                # Charging was interrupted: the driver presents a new card for the rest.
                if step in ("card", "charge"):
                    i = steps.index("card")
                elif step == "stop":
                    i = steps.index("unplug")
        fw.disarm()
        for t in self.timers:
            t.cancel()
        self.timers = []
        self.join_faults()
        if fw.life.env and fw.alive():  # a flash cut run still going: the power goes now
            fw.kill(why="flash cut run over")
            self.note(k, "flash cut run ended at the end of the session")
            self.restart(session=k)

    def step(self, step, c, amps, stop_by, st, k):
        fw = self.fw
        if step == "plug":
            self.amps[c] = amps
            self.plugged[c] = True
            fw.send("load %d %d" % (c, amps))
            fw.send("plug %d" % c)
            fw.wait_line(r"connector %d: vehicle plugged in" % c)
        elif step == "card":
            for attempt in range(3):
                st["tag"] = tag = self.new_tag(k)
                fw.send("card %d %s" % (c, tag))
                line = fw.wait_line(r"transaction started for %s |card %s refused|%s ignored" % (tag, tag, tag), 30)
                if "transaction started" in line:
                    return
                self.findings.append("session %d: card %s not accepted: %s" % (k, tag, line))
                fw.sleep(1)
            raise AssertionError("session %d: no transaction could be started" % k)
        elif step == "charge":
            t = time.time()
            try:
                fw.sleep(st["left"])
            finally:
                st["left"] = max(0.5, st["left"] - (time.time() - t))
        elif step == "stop":
            if stop_by == "card":
                fw.send("card %d %s" % (c, st["tag"]))
            else:
                self.plugged[c] = False
                fw.send("unplug %d" % c)
            fw.wait_line(r"connector %d: transaction stopped" % c)
            fw.sleep(self.rng.uniform(0, 0.5))
        elif step == "unplug":
            if self.plugged[c]:
                self.plugged[c] = False
                fw.send("unplug %d" % c)
                fw.wait_line(r"connector %d: vehicle unplugged" % c)
            fw.sleep(self.rng.uniform(0.3, 1.2))  # distinct start timestamps for the next session

    # ---- the end ---------------------------------------------------------------------------
    def settle(self, timeout):
        # Everything healed; wait until the CSMS has all it should have, or
        # nothing moves any more on a connected link.
        fw = self.fw
        self.join_faults()
        self.csms.silent.clear()
        self.proxy.heal()
        with self._csms_lock:
            if not self.csms_up:
                self.csms.start_in_thread(port=self.csms.port)
                self.csms_up = True
        if not fw.alive():
            self.restart(session="end")
        for c in (1, 2):
            if self.plugged[c]:
                self.plugged[c] = False
                fw.send("unplug %d" % c)
        end = time.time() + timeout
        while time.time() < end:
            if not fw.alive():
                self.findings.append("firmware life %d died while the queue drained (code %s):\n%s"
                                     % (fw.life.n, fw.life.exit, fw.life.tail(20)))
                self.restart(session="end")
            report = analyze(self, final=False)
            if not report["missing"]:
                return time.time()
            lines = fw.life.lines
            connected = [i for i, ln in enumerate(lines) if "link: connected" in ln]
            lost = [i for i, ln in enumerate(lines) if "connection to the CSMS lost" in ln or "cannot connect" in ln]
            quiet = time.time() - max([t for t, d, _, _ in self.csms.frames if d == "<<"] or [0])
            if connected and (not lost or connected[-1] > lost[-1]) and quiet > 12:
                return time.time()  # connected, and nothing more comes: what is missing is lost
            time.sleep(0.5)
        return time.time()

    def finish(self):
        fw = self.fw
        if fw.alive():
            try:
                fw.send("quit")
            except Died:
                pass
            if not fw.life.done.wait(10):
                fw.kill(why="did not quit")
                self.findings.append("firmware life %d did not quit within 10 s" % fw.life.n)
            else:
                fw.life.killed = "quit"
        self.proxy.stop()
        self.ops.close()
        with self._csms_lock:
            if self.csms_up:
                self.csms.stop_thread()
                self.csms_up = False


# ---- the verdict ---------------------------------------------------------------------------------

class Tx:
    def __init__(self, tag, c, life, idx, meter_start, ghost):
        self.tag = tag
        self.c = c
        self.life = life
        self.idx = idx
        self.meter_start = meter_start
        self.ghost = ghost  # started after an emulated power cut: not required
        self.committed = False
        self.samples = []
        self.unsure_samples = 0  # logged as the very last thing before a kill or a cut
        self.stop = None  # {"reason", "meterStop", "life", "committed", "ghost"}
        self.ghost_activity = ghost  # something happened to it after an emulated power cut
        self.interrupted = None  # {"reason", "meterStop", "life"}: the last PowerLoss-type end
        self.ends = []  # every such end logged (a cut may make the firmware redo one)
        self.open_at_death = None  # the Life it was running in when the power went
        self.lives = {life.n}


def parse(lives):
    txs = {}
    order = []
    thinned = 0
    for life in lives:
        open_ = {}
        end = life.live_end()
        lines = life.lines
        for i, ln in enumerate(lines):
            ghost = i >= end
            m = RX_START.search(ln)
            if m:
                c, tag, e = int(m.group(1)), m.group(2), int(m.group(3))
                tx = txs.get(tag)
                if tx is None:
                    tx = txs[tag] = Tx(tag, c, life, i, e, ghost)
                    order.append(tx)
                open_[c] = tx
                continue
            m = RX_CONTACTOR.search(ln)
            if m:
                tx = open_.get(int(m.group(1)))
                if tx is not None and not ghost:
                    tx.committed = True
                continue
            m = RX_FRAME_OUT.search(ln)
            if m:
                try:
                    msg = json.loads(m.group(1))
                except ValueError:
                    continue
                if msg[2] == "StartTransaction" and not ghost and msg[3].get("idTag") in txs:
                    txs[msg[3]["idTag"]].committed = True
                continue
            m = RX_SAMPLE.search(ln)
            if m:
                tx = open_.get(int(m.group(1)))
                if tx is not None and not ghost:
                    # Logged just before it is queued (synchronously): any later live line
                    # proves it went to flash; the last line before a kill or a cut may not.
                    if any("cannot write the transaction queue" not in later for later in islice(lines, i + 1, end)):
                        tx.samples.append(int(m.group(2)))
                    else:
                        tx.unsure_samples += 1
                continue
            m = RX_STOP.search(ln)
            if m:
                c = int(m.group(1))
                tx = open_.pop(c, None)
                if tx is None:
                    continue
                tx.lives.add(life.n)
                committed = False
                for later in islice(lines, i + 1, end):
                    s = RX_STATUS.search(later)
                    if s and int(s.group(1)) == c or '"StopTransaction"' in later and ">> [2" in later:
                        committed = True
                        break
                stop = {"reason": m.group(2), "meterStop": tx.meter_start + int(m.group(3)), "life": life.n,
                        "committed": committed and not ghost, "ghost": ghost}
                tx.ghost_activity |= ghost
                if tx.stop is None or tx.stop["ghost"]:
                    tx.stop = stop
                continue
            m = RX_INTERRUPTED.search(ln)
            if m:
                tx = txs.get(m.group(2))
                if tx is not None:
                    tx.interrupted = {"reason": m.group(3), "meterStop": int(m.group(4)), "life": life.n,
                                      "ghost": ghost}
                    tx.ends.append(tx.interrupted)
                    tx.ghost_activity |= ghost
                    tx.lives.add(life.n)
                continue
            if RX_THINNED.search(ln) and not ghost:
                thinned += 1
        for tx in open_.values():
            tx.open_at_death = life
            tx.lives.add(life.n)
    return order, thinned


def energies(mv_list):
    out = []
    for mv in mv_list:
        for s in mv.get("sampled_value", mv.get("sampledValue", [])):
            if s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register" and \
                    s.get("context", "Sample.Periodic") == "Sample.Periodic":
                try:
                    out.append(int(float(s["value"])))
                except (KeyError, ValueError):
                    pass
    return out


def analyze(h, final=True):
    lives = h.fw.lives
    with h.fw._lock:
        order, thinned = parse(lives)
    csms = h.csms
    by_tag = defaultdict(list)
    for tx_id, t in sorted(csms.transactions.items()):
        if t["cp"] == CP:
            by_tag[t["idTag"]].append(tx_id)
    problems = []  # firmware failures (lost, duplicated, wrong)
    missing = []  # what may still come
    uncertain = []
    ghosts = []
    checked = Counter()
    lost = Counter()
    dup_tx = 0
    ghost_tags = set()
    by_life = {life.n: life for life in lives}

    def context(tx, what):
        life = by_life[max(tx.lives)]
        rel = [ln for ln in life.lines if tx.tag in ln or ("connector %d" % tx.c) in ln]
        return ("transaction %s (connector %d, started in life %d, last seen in life %d): %s\n"
                "    last firmware log lines about it (life %d%s):\n%s" % (
                    tx.tag, tx.c, tx.life.n, life.n, what, life.n,
                    ", killed: " + life.killed if life.killed else "",
                    "\n".join("      | " + ln for ln in rel[-8:])))

    for tx in order:
        ids = by_tag.get(tx.tag, [])
        if tx.ghost:
            ghosts.append(tx.tag)
            ghost_tags.add(tx.tag)
            continue
        if tx.ghost_activity:
            ghost_tags.add(tx.tag)
        checked["StartTransaction"] += 1
        if not ids:
            if not tx.committed and not tx.interrupted and not tx.stop:
                uncertain.append(tx.tag)
                checked["StartTransaction"] -= 1
                continue
            lost["StartTransaction"] += 1
            missing.append(tx.tag)
            problems.append(context(tx, "StartTransaction never reached the CSMS"))
            continue
        if len(ids) > 1:
            dup_tx += 1
            problems.append(context(tx, "recorded %d times by the CSMS (transactionIds %s)" % (len(ids), ids)))
        rec = csms.transactions[ids[0]]
        if rec["meterStart"] != tx.meter_start:
            problems.append(context(tx, "meterStart %s at the CSMS, the firmware started at %d Wh"
                                    % (rec["meterStart"], tx.meter_start)))
        # The stop
        options = []
        if tx.stop and not tx.stop["ghost"]:
            options.append((tx.stop["reason"], tx.stop["meterStop"]))
        for end in tx.ends:
            options.append((end["reason"], end["meterStop"]))
        if tx.stop and tx.stop["ghost"]:
            options.append((tx.stop["reason"], tx.stop["meterStop"]))
        if tx.stop and tx.stop["committed"] and tx.interrupted:
            problems.append(context(tx, "ended twice: stopped (%s) and, after a restart, again (%s)" % (
                tx.stop["reason"], tx.interrupted["reason"])))
        checked["StopTransaction"] += 1
        if not options:
            if final:
                lost["StopTransaction"] += 1
                problems.append(context(tx, "StopTransaction never reached the CSMS: the firmware never ended "
                                        "the transaction (no stop, no PowerLoss stop after the restart)"))
            missing.append(tx.tag)
        elif "meterStop" not in rec:
            lost["StopTransaction"] += 1
            missing.append(tx.tag)
            problems.append(context(tx, "StopTransaction never reached the CSMS (expected %s)" % " or ".join(
                "%s at %d Wh" % o for o in options)))
        else:
            got = (rec["reason"] or "Local", rec["meterStop"])
            if got not in options:
                problems.append(context(tx, "the CSMS recorded the stop as %s at %d Wh, expected %s" % (
                    got[0], got[1], " or ".join("%s at %d Wh" % o for o in options))))
            if rec["meterStop"] < rec["meterStart"]:
                problems.append(context(tx, "meterStop %d below meterStart %d" % (rec["meterStop"], rec["meterStart"])))
        if tx.interrupted and tx.open_at_death is not None and tx.tag not in ghost_tags:
            # The meter at the power loss, or at the restart that ended it (the same unless a run on
            # dead flash in between charged the connector: what a real power cut cannot do).
            regs = [tx.open_at_death.registers.get(tx.c), by_life[tx.interrupted["life"] - 1].registers.get(tx.c)]
            if None in regs:
                problems.append(context(tx, "the meter register file was torn by a kill"))
            elif tx.interrupted["meterStop"] not in {round(r) for r in regs}:  # the firmware rounds to the Wh
                problems.append(context(tx, "ended (%s) at %d Wh, but the meter register at the power loss "
                                        "(life %d) was %d Wh" % (tx.interrupted["reason"], tx.interrupted["meterStop"],
                                                                 tx.open_at_death.n, round(regs[0]))))
        # The samples
        got = set()
        for i in ids:
            got.update(energies(csms.transactions[i]["meterValues"]))
        want = sorted(set(tx.samples))
        checked["MeterValues"] += len(tx.samples)
        gone = [e for e in want if e not in got]
        if gone:
            n = sum(1 for e in tx.samples if e in gone)
            lost["MeterValues"] += n
            missing.append(tx.tag)
            problems.append(context(tx, "%d of %d sampled meter values never reached the CSMS: %s Wh" % (
                n, len(tx.samples), gone)))

    known = {tx.tag for tx in order}
    for tag, ids in by_tag.items():
        if tag not in known:
            problems.append("the CSMS has transaction(s) %s for %s, which the firmware never logged as started"
                            % (ids, tag))
    # The meter registers: never backwards (per connector, CSMS view and the files).
    for c in (1, 2):
        last = None
        for tx_id, t in sorted(csms.transactions.items()):
            if t["connector"] != c or t["cp"] != CP:
                continue
            if last is not None and t["meterStart"] < last[1]:
                problems.append("connector %d: transaction %d starts at %d Wh, below the %d Wh where transaction "
                                "%d stopped" % (c, tx_id, t["meterStart"], last[1], last[0]))
            if "meterStop" in t:
                last = (tx_id, t["meterStop"])
        prev = 0.0
        for life in lives:
            reg = life.registers.get(c)
            if reg is None and life.exit is not None:
                problems.append("connector %d: the meter register file was torn when life %d ended" % (c, life.n))
            elif reg is not None:
                if reg + 1e-6 < prev:
                    problems.append("connector %d: meter register went back from %.3f to %.3f Wh (life %d)"
                                    % (c, prev, reg, life.n))
                prev = reg
    tags_of = {i: t["idTag"] for i, t in csms.transactions.items()}
    for _, cp, action, tx_id in csms.orphans:
        problems.append("%s for unknown transactionId %s reached the CSMS" % (action, tx_id))
    for tx_id, second in csms.conflicts:
        if tags_of.get(tx_id) not in ghost_tags:
            problems.append("transaction %s (%s) stopped twice with different data: %s" % (
                tx_id, tags_of.get(tx_id), second))
    for msg, errs in csms.violations:
        problems.append("schema violation in %s: %s" % (json.dumps(msg)[:200], errs))
    for life in lives:
        tb = [i for i, ln in enumerate(life.lines) if "Traceback" in ln]
        if tb:
            problems.append("firmware life %d printed a traceback:\n%s" % (
                life.n, "\n".join("      | " + ln for ln in life.lines[max(0, tb[0] - 5):tb[0] + 25])))
    with h.fw._lock:
        sec = soak_ops.security_judge(lives, dict(getattr(csms, "security_events", {})), CP, final)
    problems.extend(sec["problems"])
    missing.extend("security event %s" % (e,) for e in sec["missing"])
    if final:
        problems.extend(h.findings)
    unsure = sum(tx.unsure_samples for tx in order)
    return {"problems": problems, "missing": missing, "uncertain": uncertain, "ghosts": ghosts, "unsure": unsure,
            "checked": checked, "lost": lost, "dup_tx": dup_tx, "thinned": thinned, "transactions": order,
            "security": sec}


def run(seed, sessions, workdir, settle_timeout=150):
    root = Path(os.environ.get("FAULT_FW_TREE") or ROOT)
    h = Harness(seed, sessions, workdir, root)
    t0 = time.time()
    print("\nfault injection: seed %d, %d sessions (rerun with FAULT_SEED=%d FAULT_SESSIONS=%d)"
          % (seed, sessions, seed, sessions), flush=True)
    try:
        h.boot()
        for k in range(1, sessions + 1):
            h.session(k)
        t_sessions = time.time()
        h.settle(settle_timeout)
        t_settled = time.time()
    finally:
        h.finish()
    r = analyze(h)
    fw_lives = h.fw.lives
    tx_ids = [i for i, t in h.csms.transactions.items() if t["cp"] == CP]
    lines = [
        "fault injection report",
        "  seed %d, sessions %d, firmware lives %d, transactions started %d (at the CSMS: %d)" % (
            seed, sessions, len(fw_lives), len(r["transactions"]), len(tx_ids)),
        "  faults injected: %s" % (", ".join("%s %d" % (k, h.faults[k]) for k in KINDS) or "none"),
        "  process ends: %s" % ", ".join("%s x%d" % kv for kv in sorted(Counter(
            (life.killed or "exit %s" % life.exit) for life in fw_lives).items())),
        "  flash cuts that happened: %d; half-open detected after %s s; boots in safe mode: %s" % (
            sum(1 for life in fw_lives if life.cut_at is not None),
            ", ".join("%.1f" % w for w in h.half_open_waits) or "-",
            ", ".join("%d (%s)" % (n, what) for what, n in sorted(Counter(
                ln.split("safe mode, ")[-1] for life in fw_lives for ln in life.lines[:80]
                if "boots ended badly in a row" in ln).items())) or "none"),
        "  CSMS: restarts %d, connections %d, retransmissions absorbed %s; proxy: %d connections, %d cuts, "
        "%d half-open" % (h.csms.restarts, h.csms.connections, dict(h.csms.duplicates) or "none",
                          h.proxy.connections, h.proxy.cuts, h.proxy.half_opens),
        "  messages checked: %d (%s)" % (sum(r["checked"].values()),
                                         ", ".join("%s %d" % kv for kv in sorted(r["checked"].items()))),
        "  not required: starts killed before they were stored %d, starts after a flash cut %d, samples "
        "logged just before a kill/cut %d; thinned by design: %d" % (
            len(r["uncertain"]), len(r["ghosts"]), r["unsure"], r["thinned"]),
        "  lost = %d (%s), duplicated transactions = %d" % (
            sum(r["lost"].values()), ", ".join("%s %d" % kv for kv in sorted(r["lost"].items())) or "none",
            r["dup_tx"]),
        "  security events checked %d, lost %d, duplicated %d (retransmissions absorbed %d, logged after a "
        "flash cut %d, two in one second under one key %d)" % (
            r["security"]["checked"], r["security"]["lost"], r["security"]["duplicated"], r["security"]["absorbed"],
            r["security"]["ghosts"], r["security"]["merged"]),
        "  operations checked: %s" % (", ".join("%s %d" % kv for kv in sorted(h.ops.checked.items())) or "none"),
        "  operation outcomes: %s" % (", ".join("%s x%d" % kv for kv in sorted(h.ops.outcomes.items())) or "none"),
        "  time: sessions %.0f s, settling %.0f s, total %.0f s (%.1f s per session)" % (
            t_sessions - t0, t_settled - t_sessions, time.time() - t0, (time.time() - t0) / max(sessions, 1)),
    ]
    if os.environ.get("FAULT_VERBOSE") or r["problems"]:
        lines.append("  fault log:")
        lines += ["    [%6.1f s] session %s: %s" % e for e in h.fault_log]
    if r["problems"]:
        # Every life's log, and the CSMS's frames, to read what happened around a problem.
        logs = Path(workdir) / "lives.log"
        with open(logs, "w") as f:
            for life in fw_lives:
                f.write("==== life %d (%s)\n" % (life.n, life.killed or "exit %s" % life.exit))
                f.writelines("%.3f %s\n" % (t, ln) for t, ln in zip(life.times, life.lines))
            f.write("==== CSMS frames\n")
            f.writelines("%.3f %s %s\n" % (t, d, json.dumps(m)[:400]) for t, d, _, m in h.csms.frames)
        lines.append("  the firmware's log, life by life, and the CSMS's frames: %s" % logs)
        lines.append("  PROBLEMS (%d):" % len(r["problems"]))
        lines += ["  - " + p for p in r["problems"]]
    text = "\n".join(lines)
    print(text, flush=True)
    out = os.environ.get("FAULT_REPORT")
    if out:  # for host_tests/soak.py, which combines the shards' reports
        Path(out).write_text(json.dumps({
            "seed": seed, "sessions": sessions, "lives": len(fw_lives), "transactions": len(r["transactions"]),
            "faults": dict(h.faults), "checked": dict(r["checked"]), "lost": dict(r["lost"]), "dup_tx": r["dup_tx"],
            "security": {k: r["security"][k] for k in ("checked", "lost", "duplicated", "absorbed", "ghosts", "merged")},
            "ops_checked": dict(h.ops.checked), "ops_outcomes": dict(h.ops.outcomes),
            "uncertain": len(r["uncertain"]), "ghosts": len(r["ghosts"]), "unsure": r["unsure"],
            "thinned": r["thinned"], "csms_restarts": h.csms.restarts, "cuts": h.proxy.cuts,
            "half_open": h.proxy.half_opens, "flash_cuts": sum(1 for life in fw_lives if life.cut_at is not None),
            "absorbed": dict(h.csms.duplicates), "problems": r["problems"],
            "time": {"sessions": t_sessions - t0, "settle": t_settled - t_sessions, "total": time.time() - t0}},
            indent=1))
    return r, text


def _seed():
    s = os.environ.get("FAULT_SEED")
    return int(s) if s else random.SystemRandom().randrange(1, 1 << 31)


def test_fault_injection(tmp_path):
    """A short run: a handful of sessions, every kind of fault at least once (about 60-90 s)."""
    if os.environ.get("FAULT_SOAK"):
        pytest.skip("FAULT_SOAK set: the long run is test_fault_injection_soak")
    r, text = run(_seed(), int(os.environ.get("FAULT_SESSIONS", 6)), tmp_path)
    assert not r["problems"], text


@pytest.mark.skipif(not os.environ.get("FAULT_SOAK"), reason="long run: set FAULT_SOAK=1 (make soak)")
def test_fault_injection_soak(tmp_path):
    r, text = run(_seed(), int(os.environ.get("FAULT_SESSIONS", 40)), tmp_path, settle_timeout=330)
    assert not r["problems"], text


def test_the_judge_itself():
    """The verdict on a made-up record: every kind of loss and duplication is named."""
    import types

    def life(n, lines, killed="timed kill", regs=None, cut_at=None):
        lf = Life(n, {}, time.time())
        lf.lines = ["12:00:00 INFO  " + ln for ln in lines]
        lf.killed, lf.exit, lf.registers, lf.cut_at = killed, -9, regs or {1: 0.0, 2: 0.0}, cut_at
        return lf

    start = 'ocpp: >> [2, "a-%d", "StartTransaction", {"idTag": "%s", "connectorId": %d, "meterStart": %d}]'
    lives = [
        life(1, ["station: connector 1: transaction started for T1 at 10 Wh",
                 "contactor: connector 1: contactor closed, power on",
                 "meter: connector 1: 12 Wh, 11040 W (Sample.Periodic)",
                 "meter: connector 1: 15 Wh, 11040 W (Sample.Periodic)",
                 "station: connector 1: transaction stopped (Local), 7 Wh delivered",
                 "station: connector 1: Charging -> Finishing",
                 "station: connector 2: transaction started for T2 at 0 Wh",
                 "contactor: connector 2: contactor closed, power on",
                 start % (1, "T2", 2, 0),
                 "meter: connector 2: 4 Wh, 11040 W (Sample.Periodic)",
                 "station: connector 1: transaction started for T3 at 17 Wh"],  # killed right after: unsure
             regs={1: 17.2, 2: 6.5}),
        life(2, ["ocpp: connector 2: the transaction of T2 was interrupted (PowerLoss), ending it at 5 Wh",
                 "station: connector 1: transaction started for T4 at 17 Wh",
                 "contactor: connector 1: contactor closed, power on",
                 "station: connector 1: transaction stopped (Local), 3 Wh delivered",
                 "station: connector 1: Finishing -> Available"], killed="quit"),
    ]
    csms = DevCSMS()
    csms.transactions = {
        1: {"cp": CP, "connector": 1, "idTag": "T1", "meterStart": 10, "meterValues": [
            {"sampled_value": [{"value": "12", "context": "Sample.Periodic"}]}], "meterStop": 17, "reason": "Local"},
        2: {"cp": CP, "connector": 2, "idTag": "T2", "meterStart": 0, "meterValues": [
            {"sampled_value": [{"value": "4", "context": "Sample.Periodic"}]}]},
        3: {"cp": CP, "connector": 1, "idTag": "T4", "meterStart": 17, "meterValues": [],
            "meterStop": 20, "reason": "Local"},
        4: {"cp": CP, "connector": 1, "idTag": "T4", "meterStart": 17, "meterValues": [],
            "meterStop": 20, "reason": "Local"},
    }
    h = types.SimpleNamespace(fw=types.SimpleNamespace(lives=lives, _lock=threading.RLock()), csms=csms, findings=[])
    r = analyze(h)
    text = "\n".join(r["problems"])
    assert "transaction T1" in text and "1 of 2 sampled meter values never reached the CSMS: [15]" in text, text
    assert "transaction T2" in text and "StopTransaction never reached the CSMS (expected PowerLoss at 5 Wh)" in text
    assert "ended (PowerLoss) at 5 Wh, but the meter register at the power loss (life 1) was 6 Wh" in text
    assert "transaction T4" in text and "recorded 2 times by the CSMS (transactionIds [3, 4])" in text
    assert not [p for p in r["problems"] if p.startswith("transaction T3")] and r["uncertain"] == ["T3"]
    assert r["lost"] == {"MeterValues": 1, "StopTransaction": 1} and r["dup_tx"] == 1


def test_the_judge_itself_on_operations_and_security_events():
    """The new verdicts on made-up records: an illegal or unfinished FirmwareStatusNotification
    sequence, a security event lost, one recorded twice (a restamped resend), a retransmission
    absorbed, an event logged after a flash cut not required."""
    fsp = soak_ops.fw_status_problems
    assert fsp(["Downloading", "Downloaded", "Installing", "Installed"]) == []
    assert fsp(["Downloading", "Downloading", "Downloaded", "Installing", "Downloading", "Downloaded", "Installing",
                "InstallationFailed"]) == []  # a retry, a restart during the install
    assert fsp(["Downloading", "DownloadFailed"]) == []
    assert "Downloading after the final Installed" in fsp(["Downloading", "Downloaded", "Installing", "Installed",
                                                           "Downloading", "DownloadFailed"])[0]
    assert "Installed may not follow Downloading" in fsp(["Downloading", "Installed"])[0]
    assert "never ended" in fsp(["Downloading", "Downloaded"])[0]
    assert "Installing may not follow the request" in fsp(["Installing", "Installed"])[0]
    # a life killed meanwhile: statuses still in RAM went with it; the order of the rest holds
    assert fsp(["Installed"], lost_power=True) == []
    assert fsp(["Downloading", "Installing", "Downloading", "Installed"], lost_power=True) == []
    assert "Downloaded may not follow Installing" in fsp(["Installing", "Downloaded", "Installed"], True)[0]
    assert "never ended" in fsp(["Downloading", "Installing"], lost_power=True)[0]
    assert fsp(["Installed", "Installed"], lost_power=True) == []  # the answer lost with the power
    assert "Installed after the final Installed" in fsp(["Downloading", "Downloaded", "Installing", "Installed",
                                                         "Installed"])[0]  # no life lost: a second report
    assert "InstallationFailed after the final Installed" in fsp(["Installed", "InstallationFailed"], True)[0]

    t = 1_800_000_000

    def life(n, lines, cut_at=None):
        lf = Life(n, {}, time.time())
        lf.lines = ["12:00:00 INFO  " + ln for ln, _ in lines]
        lf.times = [t + dt for _, dt in lines]
        lf.cut_at = cut_at
        return lf

    lives = [life(1, [("security: StartupOfTheDevice (critical): firmware 0.1.0", 0),
                      ("security: InvalidMessages: frame is not valid JSON, ignored", 1),  # not critical: not sent
                      ("security: SettingSystemTime (critical): from 2000", 2)]),
             life(2, [("security: StartupOfTheDevice (critical): firmware 0.1.0", 10),
                      ("security: FirmwareUpdated (critical): 9.1.0", 11),
                      ("flash: emulated power cut: block writes after the 3-th are dropped", 12),
                      ("security: ResetOrReboot (critical): after the cut", 12)], cut_at=2)]
    iso = soak_ops.iso
    records = {
        (CP, "StartupOfTheDevice", iso(t), "firmware 0.1.0"): {"n": 2},  # sent twice (answer lost): absorbed
        (CP, "StartupOfTheDevice", iso(t + 10), "firmware 0.1.0"): {"n": 1},
        (CP, "SettingSystemTime", iso(t + 2), "from 2000"): {"n": 1},
        (CP, "SettingSystemTime", iso(t + 3602), "from 2000"): {"n": 1},  # the same event again, restamped
        # FirmwareUpdated 9.1.0 never came; ResetOrReboot after the cut: not required
    }
    r = soak_ops.security_judge(lives, records, CP)
    assert (r["checked"], r["lost"], r["duplicated"], r["absorbed"], r["ghosts"]) == (4, 1, 1, 1, 1), r
    text = "\n".join(r["problems"])
    assert "security event FirmwareUpdated (9.1.0) logged by life 2" in text and "never reached the CSMS" in text
    assert "recorded security event SettingSystemTime (from 2000) at %s" % iso(t + 3602) in text
    assert soak_ops.security_judge(lives, records, CP, final=False)["missing"] == [("FirmwareUpdated", "9.1.0")]


PREP_KILLED_INSTALL = '''
import sys, asyncio
from hw import unixflash
root = unixflash.mount(sys.argv[1])
import slots
slots.root = root
import storage, update
storage.Store(root).save("fwupdate", {"location": sys.argv[3], "at": 0, "retries": 0, "interval": 0, "ver": sys.argv[4]})
update.make_room()
with open(sys.argv[2], "rb") as f, open(update.download_path(), "wb") as o:
    o.write(f.read())
print("installed", asyncio.run(update.install(update.download_path())))
'''


def test_a_kill_right_after_an_install_does_not_install_it_again(tmp_path):
    """Found by the soak (fw-install, kill): the power goes after update.install() switched the
    state to the new slot but before the request ("fwupdate") was removed. The next boot tries
    the new version and must report Installed once; it used to resume the stored request too:
    Downloading after Installed, a second download and install (or DownloadFailed after
    Installed). The flash is prepared as that kill leaves it, by the firmware's own modules."""
    bundles = soak_ops.build_bundles(tmp_path)
    web = soak_ops.FileServer({v + ".bin": b for v, b in bundles.items()})
    gets = []
    orig = soak_ops._Files.do_GET

    def counting(self):
        gets.append(self.path)
        return orig(self)
    soak_ops._Files.do_GET = counting
    csms = DevCSMS()
    csms.start_in_thread()
    data = tmp_path / CP
    v = soak_ops.VERSIONS[0]
    (tmp_path / "prep.py").write_text(PREP_KILLED_INSTALL)
    (tmp_path / "new.bin").write_bytes(bundles[v])
    p = subprocess.run([Firmware(data, "ws://x", CP).cmd[0], str(tmp_path / "prep.py"), str(data),
                        str(tmp_path / "new.bin"), "%s/%s.bin" % (web.url, v), v],
                       cwd=ROOT, env=mp_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "installed " + v in p.stdout, p.stdout + p.stderr
    fw = Station(ROOT, data, "ws://127.0.0.1:%d" % csms.port, time.time())
    try:
        fw.start()
        fw.wait_line(r"accepted this charge point", 30)
        fw.wait_line(r"version %s confirmed" % v, 10)
        time.sleep(4)  # a resumed download would have begun by now (retryInterval 0)
        statuses = [pl["status"] for _, _, pl in csms.calls("FirmwareStatusNotification")]
        boots = [pl["firmwareVersion"] for _, _, pl in csms.calls("BootNotification")]
        assert boots == [v] and statuses == ["Installed"], (boots, statuses, fw.life.tail(30))
        assert gets == []  # nothing downloaded again
    finally:
        soak_ops._Files.do_GET = orig
        fw.kill(why="end")
        web.stop()
        csms.stop_thread()
