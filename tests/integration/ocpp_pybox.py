"""A wallbox built on the independent Python `ocpp` package (charge-point role), for integration tests and the bench.

It answers GetConfiguration from a small key table, records every SetChargingProfile and ClearChargingProfile it
receives, and accepts them (or rejects them per `reject_stack_above`, like boxes that accept only stack level 0)."""

import asyncio
import base64

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect


def basic_auth_header(user, password):
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    return {"Authorization": "Basic " + token}


class PyBox(ChargePoint):
    def __init__(self, cbid, ws, config=None, reject_stack_above=None):
        super().__init__(cbid, ws, response_timeout=10)
        self.config = config if config is not None else {
            "ChargeProfileMaxStackLevel": "8",
            "ChargingScheduleAllowedChargingRateUnit": "Current",
            "MaxChargingProfilesInstalled": "10",
        }
        self.reject_stack_above = reject_stack_above
        self.profiles = asyncio.Queue()
        self.clears = asyncio.Queue()
        self.calls = []

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None, **_):
        self.calls.append("GetConfiguration")
        keys = key or list(self.config)
        known = [{"key": k, "readonly": True, "value": self.config[k]} for k in keys if k in self.config]
        unknown = [k for k in keys if k not in self.config]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id, cs_charging_profiles, **_):
        self.calls.append("SetChargingProfile")
        stack = cs_charging_profiles["stack_level"]
        if self.reject_stack_above is not None and stack > self.reject_stack_above:
            return call_result.SetChargingProfile(status="Rejected")
        self.profiles.put_nowait((connector_id, cs_charging_profiles))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **kwargs):
        self.clears.put_nowait(kwargs)
        return call_result.ClearChargingProfile(status="Accepted")

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message, **_):
        self.calls.append("TriggerMessage:" + requested_message)
        return call_result.TriggerMessage(status="Accepted")

    async def boot(self):
        return await self.call(call.BootNotification(charge_point_model="PyBox", charge_point_vendor="Test"))


async def open_box(port, cbid, password=None, subprotocols=("ocpp1.6",), **kw):
    """Connect and start the message loop; returns (box, ws, task)."""
    headers = basic_auth_header(cbid, password) if password is not None else None
    ws = await connect("ws://127.0.0.1:%d/%s" % (port, cbid), subprotocols=list(subprotocols),
                       additional_headers=headers, compression=None)
    box = PyBox(cbid, ws, **kw)
    task = asyncio.get_running_loop().create_task(box.start())
    return box, ws, task


async def close_box(ws, task):
    await ws.close()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
