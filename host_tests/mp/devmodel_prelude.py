# The OCPP 2.0.1 device model (ocpp/v201/devmodel.py, reports.py) on the unix
# port, against a real Config and Station on an emulated LittleFS flash, with
# a small stand-in for the ChargePoint: host_tests/test_v201_devmodel.py puts
# its case after this text and reads the lines "= <json>".
import sys, json, asyncio
from hw import unixflash
import storage, config
from station import Station, Connector
from ocpp.rpc import CallError

ROOT = unixflash.mount(DATA, blocks=64)  # DATA, BOARD: set by the test before this text
S = storage.Store(ROOT)


def out(x):
    print("= " + json.dumps(x))


class Meter:
    # what the simulated meter says it delivers (hw/sim.py)
    measurands = {"Energy.Active.Import.Register": 0, "Power.Active.Import": 0, "Current.Import": 3,
                  "Voltage": 3, "Frequency": 0}


class Rpc:
    # cp.rpc: records each CALL's payload text; checks that the pieces make the
    # same text each time (the real link measures, then sends them)
    def __init__(self):
        self.sent = []
        self.fail_at = None  # raise CallTimeout for the CALL with this index
        self.peak = None  # set to 0: the most allocated (after a collection) while a CALL is sent

    async def call(self, action, payload, timeout=30):
        assert callable(payload)
        if self.peak is not None:  # (then only the texts' lengths are kept)
            import gc
            gc.collect()
            self.peak = max(self.peak, gc.mem_alloc())
        a = "".join(payload())
        b = "".join(payload())
        assert a == b, "pieces differ between calls"
        if self.peak is not None:
            a = len(a)
        if self.fail_at == len(self.sent):
            from ocpp.rpc import CallTimeout
            raise CallTimeout()
        self.sent.append([action, a, timeout])
        await asyncio.sleep(0)
        return {}


class CP:
    def __init__(self, station, cfg):
        self.station = station
        self.config = cfg
        self.rpc = Rpc()
        self.link = None


def build():
    # a station as app.py makes one: the stored configuration and state
    global C, ST, cp
    C = config.Config(S, BOARD)
    cons = [Connector(0)]
    for i in range(1, C.get("NumberOfConnectors") + 1):
        c = Connector(i, Meter())
        c.rating = 16.0
        c.phases = 3 if i == 1 else 1
        cons.append(c)
    ST = Station(C, cons, S)
    C.check(ST.check_config)
    cp = CP(ST, C)


build()
from ocpp.v201 import devmodel


def run(fn, p):
    # a handler call as ocpp/rpc.py makes it: the answer, then `after` once it is out
    n = len(cp.rpc.sent)
    try:
        a = fn(cp, p)
    except CallError as e:
        return {"callerror": [e.code, e.desc]}
    if type(a) is tuple:
        a, after = a
        asyncio.run(after())
    return {"answer": a, "sent": [x[1] for x in cp.rpc.sent[n:]]}


def comp(name, evse=None, connector=None, instance=None):
    c = {"name": name}
    if evse is not None:
        c["evse"] = {"id": evse}
        if connector is not None:
            c["evse"]["connectorId"] = connector
    if instance is not None:
        c["instance"] = instance
    return c


def var(name, instance=None):
    return {"name": name} if instance is None else {"name": name, "instance": instance}


def get(*items):
    # items: (component, variable[, attributeType])
    data = []
    for it in items:
        d = {"component": it[0], "variable": it[1]}
        if len(it) > 2:
            d["attributeType"] = it[2]
        data.append(d)
    p = {"getVariableData": data}
    r = run(devmodel.get_variables, p)
    return r.get("answer", r)


def set_(*items):
    # items: (component, variable, value[, attributeType])
    data = []
    for it in items:
        d = {"component": it[0], "variable": it[1], "attributeValue": it[2]}
        if len(it) > 3:
            d["attributeType"] = it[3]
        data.append(d)
    p = {"setVariableData": data}
    r = run(devmodel.set_variables, p)
    return r.get("answer", r)
