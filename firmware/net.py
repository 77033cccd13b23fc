# Network bring-up on boards with Wi-Fi (board file "network": {"type": "wifi"}):
# join the access point named by the WifiSsid / WifiPassword configuration keys,
# then set the clock from NTP (NtpServer), because TLS checks certificate dates.
#
#   ok = await net.up(config)     # main.py, before the OCPP link starts
#
# Waits at most timeout_ms for the access point, polling with asyncio sleeps so
# other tasks keep running; returns True when connected (or when the OS owns the
# network: the unix port has no `network` module and returns at once). A station
# that failed to join keeps trying in the background (watch()), as does a station
# whose Wi-Fi drops later; the OCPP supervisor reconnects on its own.
import asyncio
import time
import log
import clock

_TAG = "net"
_wlan = None


def _status_names(network):
    # WLAN.status() code -> name, for the constants this port defines.
    names = {}
    for n in ("STAT_IDLE", "STAT_CONNECTING", "STAT_WRONG_PASSWORD", "STAT_NO_AP_FOUND",
              "STAT_CONNECT_FAIL", "STAT_GOT_IP", "STAT_BEACON_TIMEOUT", "STAT_ASSOC_FAIL",
              "STAT_HANDSHAKE_TIMEOUT"):
        v = getattr(network, n, None)
        if v is not None:
            names[v] = n[5:].lower().replace("_", " ")
    return names


# A final answer: no point in waiting for the timeout. Other failures (no AP
# found, beacon timeout...) can be transient while the driver retries.
_FATAL = ("wrong password",)


async def wifi(config, timeout_ms=30000):
    # -> True once the station has an IP address.
    global _wlan
    import network
    ssid = config.get("WifiSsid")
    if _wlan is None:
        _wlan = network.WLAN(network.STA_IF)
    w = _wlan
    w.active(True)
    if w.isconnected():
        return True
    names = _status_names(network)
    log.info(_TAG, "joining Wi-Fi %r" % ssid)
    try:
        w.connect(ssid, config.get("WifiPassword") or None)
    except OSError as e:
        log.exc(_TAG, "Wi-Fi connect to %r failed" % ssid, e)
        return False
    t0 = time.ticks_ms()
    while not w.isconnected():
        st = names.get(w.status(), str(w.status()))
        if st in _FATAL:
            log.error(_TAG, "Wi-Fi %r: %s" % (ssid, st))
            w.disconnect()
            return False
        if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
            log.error(_TAG, "Wi-Fi %r: no connection after %d s (status: %s)" % (ssid, timeout_ms // 1000, st))
            w.disconnect()
            return False
        await asyncio.sleep_ms(250)
    try:
        addr = w.ifconfig()[0]
    except Exception:
        addr = "?"
    log.info(_TAG, "Wi-Fi %r connected, address %s, in %d ms" % (ssid, addr, time.ticks_diff(time.ticks_ms(), t0)))
    return True


def ntp(config):
    # Sets the clock from NtpServer; -> True if it was set. Blocks for the DNS
    # lookup and at most ntptime.timeout seconds for the answer.
    server = config.get("NtpServer")
    if not server or "NTP" not in config.get("TimeSource"):
        return False
    try:
        import ntptime
        ntptime.host = server
        ntptime.timeout = 2
        t = ntptime.time()  # seconds since this port's epoch
    except Exception as e:  # ImportError, OSError (DNS, timeout), or a bad answer
        log.warn(_TAG, "no time from NTP server %s: %s %s" % (server, type(e).__name__, e))
        return False
    t += clock.parse("%04d-01-01T00:00:00Z" % time.gmtime(0)[0])  # -> Unix seconds
    if t < 1704067200:  # before 2024: not a real answer
        log.warn(_TAG, "NTP server %s gave an impossible time, ignored" % server)
        return False
    clock.set(t)
    return True


async def up(config, timeout_ms=30000):
    try:
        import network
    except ImportError:
        return True  # unix port: the operating system runs the network
    if not config.get("WifiSsid"):
        log.error(_TAG, "no Wi-Fi network configured: at the REPL, import cfg; cfg.wifi('ssid', 'password')")
        return False
    ok = await wifi(config, timeout_ms)
    if ok:
        ntp(config)
    asyncio.create_task(watch(config))
    return ok


async def watch(config, period_ms=10000):
    # Rejoins when the Wi-Fi is down; retries NTP until the clock is set (by NTP
    # or by the CSMS's currentTime).
    while True:
        await asyncio.sleep_ms(period_ms)
        try:
            if _wlan is None or not _wlan.isconnected():
                log.warn(_TAG, "Wi-Fi is down, rejoining")
                if not await wifi(config):
                    continue
            if not clock.synced():
                ntp(config)
        except Exception as e:
            log.exc(_TAG, "network watch", e)
