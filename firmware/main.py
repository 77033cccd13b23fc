# Boot. On the unix port (simulator / Linux controller):
#   micropython firmware/main.py --board boards/unix --data DIR --csms URL --cp ID [--frames]
# On a microcontroller this file runs at power-on with board.json at the flash
# root. It stays this small because MicroPython compiles main.py from source at
# every boot. The boot stage (slots.py, built in) picks the application, an
# installed update or the built-in one, and starts it; the application is
# app.py, loaded precompiled (.mpy) or frozen.
import slots

slots.boot()
