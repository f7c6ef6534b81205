"""The pure core: no clock, no I/O, only the stdlib subset MicroPython has."""
