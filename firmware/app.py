# The application: load the board file and the stored configuration, build
# the hardware ports, the station model and the OCPP session, then run the
# event loop. main.py only imports this module, so that the board compiles
# (or freezes) it like every other module instead of parsing it at each boot.
import sys
import gc
import json
import asyncio
import log
import clock
import security
from storage import Store
from config import Config, problem as config_problem
from station import Station, Connector
import tasks
from tasks import guard
from ocpp.outbox import Outbox
from ocpp import link

_OPTIONS = ("--board", "board", "--data", "data", "--csms", "CsmsUrl", "--cp", "ChargePointId", "--ca", "ca")


def parse_args(argv):
    opts = {}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--frames":
            opts["frames"] = True
        elif a in _OPTIONS and _OPTIONS.index(a) % 2 == 0 and i + 1 < len(argv):  # (a tuple: no dict in RAM)
            opts[_OPTIONS[_OPTIONS.index(a) + 1]] = argv[i + 1]
            i += 1
        else:
            raise ValueError("unknown option %s; use --board DIR --data DIR --csms URL --cp ID [--ca FILE] [--frames]" % a)
        i += 1
    return opts


def load_board(path):
    with open(path) as f:
        return json.load(f)


def build_connectors(board, ctx):
    # One Connector per entry in the board file, with its hardware ports.
    from hw import build
    connectors = [Connector(0)]
    meters = {}
    for i, spec in enumerate(board["connectors"]):
        cid = i + 1
        contactor = build.contactor(cid, spec.get("contactor", {}), ctx)
        meter = build.meter(cid, spec.get("meter", {}), ctx, contactor)
        c = Connector(cid, meter, contactor)
        c.lock = build.lock(cid, spec.get("lock"), ctx)
        c.pilot = build.pilot(cid, spec.get("pilot"), ctx, meter)
        c.rating = float(spec.get("rating_a", 32))
        c.phases = spec.get("meter", {}).get("phases", 3)
        c.min_current = float(spec.get("min_a", 6))
        plug = spec.get("plug")
        if plug and plug.get("type") == "current":  # no plug signal: detect the vehicle by its current
            c.detect_by_current = True
        else:
            c.plug_input = build.plug(cid, plug, ctx, meter)
        meters[cid] = meter
        connectors.append(c)
    return connectors, meters


def seed_roots(root, config, cafile):
    # --ca FILE (make sim CA=): on the first start with it, its certificates
    # (a PEM bundle or DER) become CentralSystemRootCertificates of the store;
    # from then on the store is what counts, managed like any other root.
    import certs
    store = certs.Store(root, config.get("CertificateStoreMaxLength"))
    try:
        if store.read("seeded") is not None:
            n = None
        else:
            import certstore
            with open(cafile, "rb") as f:
                raw = f.read()
            n = certstore.seed(store, raw)
    except (OSError, ValueError) as e:
        log.error("boot", "--ca %s: cannot install it: %s" % (cafile, e))
        n = -1
    certs.unload()  # certstore: for this once
    if n is None:
        log.info("boot", "--ca %s ignored: the certificate store was seeded before, it is managed with "
                 "InstallCertificate / DeleteCertificate now" % cafile)
    elif n >= 0:
        log.info("boot", "--ca %s: %d CentralSystemRootCertificate(s) installed" % (cafile, n))


async def run(opts):
    board_dir = opts.get("board", "")
    board = load_board((board_dir + "/" if board_dir else "") + "board.json")
    data = opts.get("data")
    if data:  # unix port: the emulated flash is a LittleFS image inside DATA (the boot stage mounted it)
        from hw import unixflash
        root = unixflash.mounted(data)
    else:
        root = ""
    store = Store(root)
    safe = tasks.boot_check(store)
    config = Config(store, board.get("config"))
    # The OCPP package of the preferred version, imported before any runtime
    # object: its code then lies packed at the bottom of the heap, not between
    # objects. Only that version's package is loaded (protocol_package).
    ChargePoint = protocol_package((config.get("OcppVersion") or ("ocpp1.6",))[0])
    if "CsmsUrl" in opts:  # (checked below)
        config.set("CsmsUrl", opts["CsmsUrl"], False)
    # The security profile's first start and the --ca seeding, before the runtime objects:
    # what they import for this once leaves no holes among those (a TLS session in the
    # heap needs a large free block).
    link.prepare(config, store)
    if opts.get("ca"):
        seed_roots(root, config, opts["ca"])
    gc.collect()  # the next allocations from the bottom of the heap again
    log.start(store.root, config)  # the flash log, from here on
    outbox = Outbox(root, config.get("TransactionQueueBytes"))
    security.start(store.root, outbox)  # the security log and its notifications, from here on
    config.listen(security.reconfigured)
    boot_events(store)
    for key in ("CsmsUrl", "ChargePointId"):
        if key in opts:
            status = config.set(key, opts[key], False)
            if status not in ("Accepted", "RebootRequired"):
                why = config_problem(key, opts[key])
                log.error("boot", "%s %r is not valid: %s" % (key, opts[key], why or status))
                return 2
    if opts.get("frames") or config.get("LogFrames"):
        log.level = log.FRAME
    config.listen(_log_frames)
    log.info("boot", "charge point %s, board %s, CSMS %s" % (
        config.get("ChargePointId"), board.get("name", "?"), config.get("CsmsUrl")))

    connectors, meters, reader, watchdog, boot_fields = await build_hardware(board, data, safe)
    gc.collect()  # what identifying the hardware left: the runtime objects from the bottom of the heap
    station = Station(config, connectors, store)
    config.check(station.check_config)  # measurands the meters cannot deliver are Rejected
    if safe:  # reported to the CSMS as a warning on connector 0
        connectors[0].warning = "InternalError"
        connectors[0].info = ("safe mode: " + ",".join(safe))[:50]
    lnk = None

    def charge_point(cls):
        cp = cls(station, config, boot_fields, root, outbox)
        cp.on_reset = restart
        cp.link = lnk
        cp.tls = lnk.roots_context  # the https:// transfers trust the same roots
        return cp

    def switch(protocol):
        # The CSMS chose the other OCPP version: its ChargePoint replaces this one
        # (the old package's modules are let go first, so both are never in RAM).
        old = lnk.cp
        old.detach()
        tasks.stop("sampler")
        tasks.stop("recovery")
        del old
        lnk.cp = None
        cp = charge_point(protocol_package(protocol, True))
        gc.collect()
        guard("recovery", cp.recover)
        guard("sampler", cp.sample_meters)
        return cp

    lnk = link.Link(None, config, store)
    lnk.switch = switch
    cp = lnk.cp = charge_point(ChargePoint)
    ChargePoint = None
    gc.collect()

    if board.get("network"):
        import net
        await net.up(config)
    asyncio.create_task(tasks.boot_ok())
    asyncio.create_task(log.keep_flushed())
    guard("meter", station.poll_meters)
    guard("recovery", cp.recover)
    guard("reservations", station.expire_reservations)
    guard("limits", station.run_limits)
    if any(c.pilot and c.pilot.senses for c in connectors):  # a control pilot to watch
        guard("pilot", station.watch_pilots)
    guard("sampler", cp.sample_meters)
    guard("link", cp.link.supervise)
    if store.load("fwupdate"):  # an UpdateFirmware from before the restart, still to do
        cp.maintenance(True).resume()
    cp = None  # the link holds the ChargePoint: a protocol switch frees the one it replaces
    if reader:
        guard("reader", lambda: read_cards(station, reader, board["reader"].get("connector", 1)))
    if board.get("console"):
        from hw import console
        await console.run(station, config, meters)
        tasks.clean_stop()
        if watchdog:
            watchdog.stop()  # a deliberate stop: do not let the watchdog reset us
        return 0
    while True:
        await asyncio.sleep(3600)


def protocol_package(protocol, switching=False):
    # -> the ChargePoint class of that OCPP version ("ocpp1.6" / "ocpp2.0.1").
    # On a switch the other version's modules are let go first: its code and
    # schema tables leave RAM before the new ones come in.
    name = "v201" if protocol == "ocpp2.0.1" else "v16"
    if switching:
        import ocpp
        other = "v16" if name == "v201" else "v201"
        for m in [m for m in sys.modules if m.startswith("ocpp." + other)]:
            del sys.modules[m]
        if hasattr(ocpp, other):
            delattr(ocpp, other)
        gc.collect()
    return __import__("ocpp.%s.chargepoint" % name, None, None, ("ChargePoint",), 0).ChargePoint


def boot_events(store):
    # Whitepaper §8 at every boot: ResetOrReboot when the run before ended in
    # a restart of the station's own (an OCPP Reset, the restart into an update,
    # the installer's cfg.restart(): tasks.clean_stop's "restart", at its time)
    # or in a watchdog reset (where the port says), then StartupOfTheDevice.
    # A power cut or a crash is no reset: the next boot has StartupOfTheDevice only.
    r = store.load("restart")
    if r:
        security.event("ResetOrReboot", "restart: %s" % r.get("by"), r.get("at"))
    try:
        import machine
        if machine.reset_cause() == machine.WDT_RESET:
            security.event("ResetOrReboot", "watchdog reset")
    except (ImportError, AttributeError):  # the unix port has neither
        pass
    import version
    security.event("StartupOfTheDevice", "firmware %s" % version.VERSION)


def _log_frames(key, value):
    # LogFrames takes effect at once
    if key == "LogFrames":
        log.level = log.FRAME if value else log.INFO


RESTART_EXIT = 75  # unix port: "start me again" (EX_TEMPFAIL) for tools/unix_loop.sh or a service manager


def restart(hard, by=None):
    # OCPP Reset (§5.14): a board restarts the chip (Hard) or the interpreter
    # (Soft: the application software); the unix port ends the process with
    # RESTART_EXIT and its wrapper starts it again on the same data (its
    # machine.soft_reset would only exit with 0).
    # No crash for the boot-loop guard; the next boot is a commanded restart
    # (ResetOrReboot, a transaction still running ends with reason Reboot).
    tasks.clean_stop(by or "OCPP Reset (%s)" % ("Hard" if hard else "Soft"))
    if sys.platform not in ("linux", "darwin"):
        import machine
        (machine.reset if hard else machine.soft_reset)()
    raise SystemExit(RESTART_EXIT)


async def build_hardware(board, data, safe):
    # The ports the board file describes, and the BootNotification fields the
    # hardware reports. -> (connectors, meters, reader, watchdog, boot fields)
    from hw import build
    ctx = build.Context(board, data)
    connectors, meters = build_connectors(board, ctx)
    reader = None if "reader" in safe else build.reader(board.get("reader"), ctx)
    watchdog = build.watchdog(board.get("watchdog"), ctx)
    if watchdog:  # fed from now on: identification and Wi-Fi can take a while
        from hw.watchdog import feeder
        guard("watchdog", lambda: feeder(watchdog, 1000))
    modem = None if "modem" in safe else build.modem(board.get("modem"), ctx)
    return connectors, meters, reader, watchdog, await identify(board, connectors, modem)


async def identify(board, connectors, modem):
    # BootNotification fields from the hardware: the board file's, then what
    # the meter (type, serial number) and the modem (ICCID, IMSI) report.
    fields = dict(board.get("boot", {}))
    for c in connectors:
        if c.meter and hasattr(c.meter, "identify"):
            for k, v in (await c.meter.identify()).items():
                fields.setdefault(k, v)
            break
    if modem:
        fields.update(await modem.identify())
    return fields


async def read_cards(station, reader, cid):
    # A card held to the reader is presented at the reader's connector.
    while True:
        tag = await reader.poll()
        if tag:
            asyncio.create_task(station.present_card(cid, tag))
        await asyncio.sleep_ms(200)


def main():
    try:
        opts = parse_args(getattr(sys, "argv", []))
    except ValueError as e:
        log.error("boot", str(e))
        sys.exit(2)
    try:
        code = asyncio.run(run(opts))
    except Exception as e:  # the boot itself failed: counted by the boot-loop guard
        log.exc("boot", "the firmware stopped", e)
        try:
            import machine
            machine.reset()
        except (ImportError, AttributeError):
            code = 1
    sys.exit(code or 0)
