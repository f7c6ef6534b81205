"""The only clock and async code."""
