# Boot. On the unix port (simulator / Linux controller):
#   micropython firmware/main.py --board boards/unix --data DIR --csms URL --cp ID [--frames]
# On a microcontroller this file runs at power-on with board.json at the flash
# root. It stays this small because MicroPython compiles main.py from source at
# every boot; the application is app.py, loaded precompiled (.mpy) or frozen.
import app

app.main()
