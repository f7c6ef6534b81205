// A wallbox built on ocpp-rpc (npm) in strict mode: an OCPP 1.6 peer independent of our Python code and of the
// Python `ocpp` package. It validates every message it sends and receives against the official 1.6 schemas.
//
// Usage: node ocpp_rpc_box.js <ws-url-without-id> <chargeBoxId> [password]
// stdin, one JSON object per line:
//   {"cmd": "call", "tag": <any>, "action": "...", "payload": {...}}  -> strict call; prints result or error
//   {"cmd": "raw", "text": "..."}                                       -> send a frame as is (bypasses strict mode)
//   {"cmd": "close"}
// stdout, one JSON object per line: open, connectError, result, error, profile, clear, trigger, inbound (every
// frame received), strictFailure (a message that failed the schemas), close.
'use strict';
const readline = require('readline');
const { RPCClient } = require('ocpp-rpc');

const [endpoint, identity, password] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const config = {
    ChargeProfileMaxStackLevel: process.env.BOX_STACK_LEVEL || '4',
    ChargingScheduleAllowedChargingRateUnit: process.env.BOX_UNITS || 'Current',
    MaxChargingProfilesInstalled: '8',
};

const client = new RPCClient({
    endpoint,
    identity,
    password: password || undefined,
    protocols: ['ocpp1.6'],
    strictMode: true,
    reconnect: false,
    callTimeoutMs: 10000,
});

client.on('message', ({ message, outbound }) => {
    if (!outbound) out({ event: 'inbound', text: message.toString() });
});
client.on('strictValidationFailure', ({ error, outbound, isCall }) => {
    out({ event: 'strictFailure', outbound, isCall, message: String(error && error.message) });
});
let opened = false;
client.on('close', ({ code, reason }) => {
    if (!opened) return; // a refused handshake is reported by connect() below
    out({ event: 'close', code, reason: String(reason || '') });
    process.exit(0);
});

client.handle('GetConfiguration', ({ params }) => {
    const keys = params.key && params.key.length ? params.key : Object.keys(config);
    return {
        configurationKey: keys.filter((k) => k in config).map((k) => ({ key: k, readonly: true, value: config[k] })),
        unknownKey: keys.filter((k) => !(k in config)),
    };
});
client.handle('SetChargingProfile', ({ params }) => {
    out({ event: 'profile', params });
    return { status: 'Accepted' };
});
client.handle('ClearChargingProfile', ({ params }) => {
    out({ event: 'clear', params });
    return { status: 'Accepted' };
});
client.handle('TriggerMessage', ({ params }) => {
    out({ event: 'trigger', params });
    return { status: 'Accepted' };
});

async function main() {
    try {
        await client.connect();
    } catch (err) {
        out({ event: 'connectError', message: String(err.message) });
        process.exit(0);
    }
    opened = true;
    out({ event: 'open', protocol: client.protocol });
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', async (line) => {
        const cmd = JSON.parse(line);
        if (cmd.cmd === 'call') {
            try {
                const result = await client.call(cmd.action, cmd.payload);
                out({ event: 'result', tag: cmd.tag, result });
            } catch (err) {
                out({ event: 'error', tag: cmd.tag, code: err.rpcErrorCode || null, message: String(err.message) });
            }
        } else if (cmd.cmd === 'raw') {
            client.sendRaw(cmd.text);
        } else if (cmd.cmd === 'close') {
            await client.close({ code: 1000 });
        }
    });
    rl.on('close', () => client.close({ code: 1000 }));
}

main();
