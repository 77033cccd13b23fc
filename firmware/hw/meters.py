# Energy meter register maps, as data. One entry per model:
#
#   name: (meterType, function, blocks, fields, serial)
#
#   meterType  the BootNotification meterType (at most 25 characters)
#   function   3 (holding registers) or 4 (input registers) for the readings
#   blocks     ((first register, count), ...): one request each per poll
#   fields     ((measurand, encoding, scale, register[, L2, L3]), ...)
#              encoding: struct code of one big-endian value, high word first:
#                "f" float32, "H" u16, "I" u32, "i" s32, "Q" u64
#              scale: raw value * scale = the OCPP unit (Wh, W, A, V, Hz)
#              per-phase measurands (Current.Import, Voltage): the L1, L2, L3
#              registers, adjacent
#   serial     (function, register, encoding) of the serial number, or None
#
# Register addresses are 0-based, as sent on the wire. Sources: Eastron
# SDM630-Modbus protocol v1.8/v2.0, SDM120-Modbus protocol v2.4 (0xFC00 serial
# number), SDM72D-M-2 (v2) Modbus protocol; ABB B23/B24 user manual
# 2CMC485003M0201 (mapping tables; serial number 0x8900). Request limits: SDM630
# and SDM120 40 parameters (80 registers), SDM72D-M 30 (60), ABB 125 registers.
# "Power.Active.Import" is the meter's total active power (negative while
# exporting, reported as 0 by hw/modbus_meter.py).

E_IMPORT = "Energy.Active.Import.Register"
E_EXPORT = "Energy.Active.Export.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
VOLTAGE = "Voltage"
FREQUENCY = "Frequency"

_SDM_SERIAL = (3, 0xFC00, "I")  # holding register, u32
_SDM3 = (
    (VOLTAGE, "f", 1, 0x0000, 0x0002, 0x0004),
    (CURRENT, "f", 1, 0x0006, 0x0008, 0x000A),
    (POWER, "f", 1, 0x0034),  # total system power
    (FREQUENCY, "f", 1, 0x0046),
    (E_IMPORT, "f", 1000, 0x0048),  # kWh
    (E_EXPORT, "f", 1000, 0x004A),
)

PROFILES = {
    # 0x0000..0x004B in one request (76 registers, 157-byte answer)
    "SDM630": ("Eastron SDM630", 4, ((0x0000, 76),), _SDM3, _SDM_SERIAL),
    # single phase: the active power is at 0x000C, there is no 0x0034. Two
    # short requests (20 registers) instead of 76: it ships set to 2400 Bd
    "SDM120": ("Eastron SDM120", 4, ((0x0000, 14), (0x0046, 6)), (
        (VOLTAGE, "f", 1, 0x0000),
        (CURRENT, "f", 1, 0x0006),
        (POWER, "f", 1, 0x000C),
        (FREQUENCY, "f", 1, 0x0046),
        (E_IMPORT, "f", 1000, 0x0048),
        (E_EXPORT, "f", 1000, 0x004A),
    ), _SDM_SERIAL),
    # v2 register map; 76 registers exceed its 60-register limit: two requests
    "SDM72D-M": ("Eastron SDM72D-M v2", 4, ((0x0000, 12), (0x0034, 24)), _SDM3, _SDM_SERIAL),
    # holding registers, integers; 0x5000 energy block, 0x5B00 instantaneous values
    "ABB_B23": ("ABB B23", 3, ((0x5000, 8), (0x5B00, 45)), (
        (E_IMPORT, "Q", 10, 0x5000),  # 0.01 kWh
        (E_EXPORT, "Q", 10, 0x5004),
        (VOLTAGE, "I", 0.1, 0x5B00, 0x5B02, 0x5B04),
        (CURRENT, "I", 0.01, 0x5B0C, 0x5B0E, 0x5B10),
        (POWER, "i", 0.01, 0x5B14),
        (FREQUENCY, "H", 0.01, 0x5B2C),
    ), (3, 0x8900, "I")),
}

ALIASES = {"SDM72D-M-2": "SDM72D-M", "SDM72DM2": "SDM72D-M", "SDM72": "SDM72D-M",
           "B23": "ABB_B23", "ABB B23": "ABB_B23", "ABB-B23": "ABB_B23"}


def profile(name):
    # The profile tuple for a board-file name; ValueError naming the known ones.
    p = PROFILES.get(ALIASES.get(name, name))
    if p is None:
        raise ValueError("unknown meter profile %r; known: %s" % (name, ", ".join(sorted(PROFILES))))
    return p
