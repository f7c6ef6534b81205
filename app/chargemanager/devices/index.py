"""Registry of supported device models: model id (= module file name) -> dotted module path.

Pure data; `chargemanager.adapters.devices.load_model(model_id)` imports the module. A new model is a new
table module plus one line here.
"""

MODELS = {
    "eastron_sdm630": "chargemanager.devices.meters.eastron_sdm630",
    "eastron_sdm72": "chargemanager.devices.meters.eastron_sdm72",
    "abb_b23": "chargemanager.devices.meters.abb_b23",
    "heidelberg_ec": "chargemanager.devices.chargers.heidelberg_ec",
    "cfos_power_brain": "chargemanager.devices.chargers.cfos_power_brain",
    "phoenix_ev_cc_ac1": "chargemanager.devices.chargers.phoenix_ev_cc_ac1",
    "generic_di8": "chargemanager.devices.io.generic_di8",
}
