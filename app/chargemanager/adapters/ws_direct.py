"""websockets 17 connections that hand each complete text message to a callback from `data_received`.

Why: with the stock connection every message is queued in the connection's assembler and a task wakes up to
`recv()` it: one future, one task step and one more event-loop turn per message, on both legs of the gateway (box and
backend), which was a large part of the OCPP thread's CPU per forwarded message. With `on_text` set, a message that
arrives in one frame is handed over at once, on the loop, in the order it arrived.

Rules (so nothing changes but the speed):
- Only unfragmented text frames go to `on_text`; fragmented messages, binary frames and anything while the assembler
  still holds frames go the stock way (`recv()` / `async for`), so the owner keeps its receive loop for them, and
  messages are never reordered: a direct message is taken only while no earlier one waits in the assembler.
- A text frame that is not valid UTF-8 goes the stock way too, where `recv()` closes the connection with 1007.
- An exception from `on_text` is logged and the connection goes on (as one failed message would in a receive loop
  that guards its handler); it never reaches the transport, which would drop the connection.
- Reading pauses and resumes by the transport's own flow control only: `on_text` must not block.

Use `direct(base)` as `create_connection=` for `serve` (base `ServerConnection` or a subclass such as the TLS detect
connection) or `connect` (base `ClientConnection`), and set `connection.on_text` once the owner is ready.
"""

import logging

from websockets.frames import Opcode

log = logging.getLogger(__name__)

_classes = {}


class DirectText:
    """Mixin for a websockets asyncio connection class; see the module docstring."""

    on_text = None

    def process_event(self, event):
        on_text = self.on_text
        if (on_text is not None and getattr(event, "opcode", None) is Opcode.TEXT and event.fin
                and not self.recv_messages.frames.queue):
            try:
                text = event.data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                try:
                    on_text(text)
                except Exception:
                    log.exception("handling a websocket message failed")
                return
        super().process_event(event)


def direct(base):
    """The connection class `base` with `DirectText` mixed in (one class per base)."""
    cls = _classes.get(base)
    if cls is None:
        cls = _classes[base] = type("Direct" + base.__name__, (DirectText, base), {})
    return cls
