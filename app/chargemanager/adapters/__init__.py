"""Adapters: everything that touches files, sockets, devices and the clock."""
