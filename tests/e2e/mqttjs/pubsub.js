#!/usr/bin/env node
// One MQTT.js round trip for tests/e2e/test_transports.py:
//
//   node pubsub.js URL TOPIC [--ca FILE] [--mqtt-version 4|5] [--timeout-ms N]
//
// Connects to URL (ws:// or wss://; --ca is the PEM the server certificate must chain to),
// subscribes to TOPIC at QoS 1, publishes "hello from mqtt.js" to it at QoS 1 once the SUBACK
// is in, prints `received TOPIC PAYLOAD` for the message that comes back, disconnects and
// exits 0. Any error prints `error: ...` and exits 1; no message within the timeout (default
// 10 s) exits 2. Reconnecting is off, so a refused connection fails at once.
'use strict'

const fs = require('fs')
const mqtt = require('mqtt')

function usage (why) {
  console.error(`pubsub.js: ${why}`)
  console.error('usage: node pubsub.js URL TOPIC [--ca FILE] [--mqtt-version 4|5] [--timeout-ms N]')
  process.exit(64)
}

const args = process.argv.slice(2)
const positional = []
const opts = { ca: null, version: 5, timeoutMs: 10000 }
for (let i = 0; i < args.length; i++) {
  const value = () => (i + 1 < args.length ? args[++i] : usage(`${args[i]} needs a value`))
  switch (args[i]) {
    case '--ca': opts.ca = value(); break
    case '--mqtt-version': opts.version = Number(value()); break
    case '--timeout-ms': opts.timeoutMs = Number(value()); break
    default:
      if (args[i].startsWith('--')) usage(`unknown option ${args[i]}`)
      positional.push(args[i])
  }
}
if (positional.length !== 2) usage('URL and TOPIC are required')
if (![4, 5].includes(opts.version)) usage('--mqtt-version is 4 or 5')
const [url, topic] = positional
const payload = 'hello from mqtt.js'
let received = false

const timer = setTimeout(() => {
  console.log(`timeout: no message within ${opts.timeoutMs} ms`)
  process.exit(2)
}, opts.timeoutMs)

const client = mqtt.connect(url, {
  protocolVersion: opts.version,
  clientId: `mqttjs-${process.pid}`,
  reconnectPeriod: 0,
  connectTimeout: opts.timeoutMs,
  ca: opts.ca ? fs.readFileSync(opts.ca) : undefined
})

client.on('error', (err) => {
  console.log(`error: ${err.message}`)
  process.exit(1)
})

client.on('connect', (connack) => {
  console.log(`connected (MQTT ${opts.version}, session present ${connack.sessionPresent})`)
  client.subscribe(topic, { qos: 1 }, (err, granted) => {
    if (err) {
      console.log(`error: subscribe: ${err.message}`)
      process.exit(1)
    }
    console.log(`subscribed ${granted.map((g) => `${g.topic}@${g.qos}`).join(' ')}`)
    client.publish(topic, payload, { qos: 1 }, (err) => {
      if (err) {
        console.log(`error: publish: ${err.message}`)
        process.exit(1)
      }
    })
  })
})

client.on('message', (t, message) => {
  console.log(`received ${t} ${message.toString()}`)
  received = true
  clearTimeout(timer)
  // MQTT.js sends the PUBACK after this handler returns: end on the next turn, or the
  // DISCONNECT would go first and the PUBACK would hit a closed socket.
  setImmediate(() => client.end(false, {}, () => process.exit(0)))
})

client.on('close', () => {
  // Only reached before a message arrived if the broker dropped us.
  if (received) return
  console.log('error: connection closed before the message came back')
  process.exit(1)
})
