// A wallbox built on ocpp-rpc in strict mode (every message checked against the OCPP 1.6 schemas), driven by JSON
// lines on stdin, for tests. Usage: node ocpp_rpc_wallbox.js <ws url without id> <identity> [password]
//   stdin:  {"n": 1, "call": "StartTransaction", "params": {...}, "retry": true}
//   stdout: {"n": 1, "result": {...}} | {"n": 1, "error": "..."} | {"event": "open"|"close"}
//           {"incoming": "SetChargingProfile", "params": {...}}   (answered from the replies table)
// With "retry": true a call is repeated after every failure until it is answered, as a charge point does with
// its transaction messages (OCPP 1.6 section 3.7).
const { RPCClient } = require('ocpp-rpc');
const readline = require('readline');

const [url, identity, password] = process.argv.slice(2);
const client = new RPCClient({
    endpoint: url,
    identity,
    password,
    protocols: ['ocpp1.6'],
    strictMode: true,
    reconnect: true,
    maxReconnects: Infinity,
    backoff: { initialDelay: 100, maxDelay: 500, randomisationFactor: 0 },
    callTimeoutMs: 20000,
});
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const replies = {
    SetChargingProfile: { status: 'Accepted' },
    ClearChargingProfile: { status: 'Accepted' },
    RemoteStartTransaction: { status: 'Accepted' },
    RemoteStopTransaction: { status: 'Accepted' },
    Reset: { status: 'Accepted' },
    ChangeConfiguration: { status: 'Accepted' },
    GetConfiguration: { configurationKey: [{ key: 'ChargeProfileMaxStackLevel', readonly: true, value: '8' }] },
};
client.handle(({ method, params }) => {
    out({ incoming: method, params });
    if (method === 'TriggerMessage') {
        // as a charge point does: accept, then send the requested message
        if (params.requestedMessage === 'BootNotification') {
            setTimeout(() => client.call('BootNotification', { chargePointVendor: 'Sim', chargePointModel: 'RPC' })
                .then((result) => out({ event: 'triggered', result })).catch(() => {}), 10);
            return { status: 'Accepted' };
        }
        return { status: 'NotImplemented' };
    }
    if (!(method in replies)) {
        const { createRPCError } = require('ocpp-rpc');
        throw createRPCError('NotImplemented');
    }
    return replies[method];
});
let opened = false;
client.on('open', () => { opened = true; out({ event: 'open' }); });
client.on('close', () => { opened = false; out({ event: 'close' }); });

const waitOpen = () => new Promise((resolve) => {
    if (opened) return resolve();
    client.once('open', () => resolve());
});

async function run(cmd) {
    for (;;) {
        try {
            await waitOpen();
            const result = await client.call(cmd.call, cmd.params);
            return out({ n: cmd.n, result });
        } catch (err) {
            if (!cmd.retry) return out({ n: cmd.n, error: String(err && (err.rpcErrorCode || err.message || err)) });
            await new Promise((r) => setTimeout(r, 100));
        }
    }
}

let chain = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (!line.trim()) return;
    const cmd = JSON.parse(line);
    if (cmd.quit) { client.close({ force: true }).then(() => process.exit(0)); return; }
    chain = chain.then(() => run(cmd));
});
client.connect().catch(() => {});
