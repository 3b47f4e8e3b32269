'use strict';
// Sends events to fuwa with the real npm `fluent-logger` client.
//
// Run by tests/clients.rs:
//
//   node emit.js --host=127.0.0.1 --port=24224 --tag=node.msg --count=50 \
//     --mode=Message|PackedForward|CompressedPackedForward [--ack] \
//     [--shared-key=K --client-hostname=H --username=U --password=P] \
//     [--expect=ok|refused] [--timeout-ms=8000]
//
// Event i is {i, msg: "node #i", client: "node-<mode>", ...}; even i carry an
// EventTime(1700000000 + i, 987654321 - i), odd i an integer time
// 1700000000 + i (tests/clients.rs expects exactly these).
//
// --expect=ok: exits 0 once every emit callback reported success (with --ack:
// once fuwa acked every chunk), after end().
// --expect=refused: exits 0 once the client reports a HandshakeError and no
// emit callback succeeded.
// Prints a final JSON summary line on stdout:
//   {"result": "...", "succeeded": n, "errors": ["..."]}
// Any other outcome, or the hard timeout, exits non-zero.

const { createFluentSender, EventTime } = require('fluent-logger');

const BASE = 1700000000;

function parseArgs(argv) {
  const out = {};
  for (const a of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error('bad argument: ' + a);
    out[m[1]] = m[2] === undefined ? true : m[2];
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const env = process.env;
const host = args.host || env.FUWA_HOST || '127.0.0.1';
const port = Number(args.port || env.FUWA_PORT || 24224);
const tag = args.tag || env.FUWA_TAG || 'node';
const count = Number(args.count || env.FUWA_COUNT || 50);
const mode = args.mode || 'Message';
const ack = !!args.ack;
const expect = args.expect || 'ok';
const timeoutMs = Number(args['timeout-ms'] || 8000);

let succeeded = 0;
const errors = [];
let finished = false;

function finish(result, code) {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ result, succeeded, errors }));
  // let stdout drain, then go: the client may still hold timers or sockets
  process.stdout.write('', () => process.exit(code));
}

setTimeout(() => {
  errors.push('hard timeout after ' + timeoutMs + 'ms');
  finish('timeout', 124);
}, timeoutMs).unref();

const options = {
  host,
  port,
  eventMode: mode,
  requireAckResponse: ack,
  ackResponseTimeout: timeoutMs,
  timeout: 5.0,
  // no reconnect timers: one connection, one outcome
  enableReconnect: false,
  internalLogger: {
    info: (...a) => console.error('[fluent-logger info]', ...a),
    error: (...a) => console.error('[fluent-logger error]', ...a),
  },
};
if (args['shared-key'] !== undefined) {
  options.security = {
    clientHostname: args['client-hostname'] || 'node-client',
    sharedKey: args['shared-key'],
    username: args.username || '',
    password: args.password || '',
  };
}

const logger = createFluentSender(tag, options);

logger.on('error', (err) => {
  const name = (err && err.name) || 'Error';
  errors.push(name + ': ' + ((err && err.message) || String(err)));
  if (expect === 'refused' && name === 'HandshakeError' && succeeded === 0) {
    finish('refused', 0);
  } else {
    finish('error', 1);
  }
});

let pending = count;
function done(err) {
  if (err) {
    // the 'error' listener sees it too when it is a socket/handshake error;
    // emit-level errors (ack mismatch, timeout) only come here
    errors.push('emit callback: ' + ((err && err.message) || String(err)));
    finish('error', 1);
    return;
  }
  succeeded += 1;
  pending -= 1;
  if (pending === 0) {
    logger.end(null, null, () => {
      if (expect === 'ok') {
        finish('ok', 0);
      } else {
        errors.push('expected a refusal, but every event was accepted');
        finish('accepted', 1);
      }
    });
  }
}

for (let i = 0; i < count; i++) {
  const time = i % 2 === 0 ? new EventTime(BASE + i, 987654321 - i) : BASE + i;
  const record = {
    i,
    msg: 'node #' + i,
    client: 'node-' + mode,
    unicode: 'ふわ ✓',
    nested: { list: [1, 2.5, null, true], n: -i },
  };
  // label null: the tag is exactly `tag`
  logger.emit(record, time, done);
}
