// The servers of the fake internet (helpers/fakenet.js starts this inside its network
// namespace with `ip netns exec`). Never run it on the host: it binds TEST-NET addresses
// that only exist inside that namespace.
//
// stdin: the first line is the configuration (JSON: hosts, dnsAddress, cert, key, dns);
// then one JSON request per line ({id, op: 'setDns' | 'log' | 'clearLog', table}), each
// answered on stdout as {id, ok, result | error}. The first stdout line is {ready: true}
// once every server listens (or {error} before exiting). EOF on stdin (the test process
// has gone, however it died) ends this process, so the namespace empties with it.
import dgram from 'node:dgram'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import readline from 'node:readline'

const MAX_LOG = 1000
const MAX_ECHO_BODY = 64 * 1024
const MAX_DOWNLOAD = 1 << 30

const log = []
function record(entry) {
  log.push({ time: Date.now(), ...entry })
  if (log.length > MAX_LOG) log.shift()
}

let dnsTable = {}

// --- HTTP and TLS echo -------------------------------------------------------------------

// Answers JSON describing the request as received; GET /bytes/<n> answers n bytes (for
// download throughput), still logged.
function echo(scheme) {
  return (req, res) => {
    const socket = req.socket
    const seen = {
      scheme,
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      localAddress: socket.localAddress,
      localPort: socket.localPort,
      method: req.method,
      path: req.url,
      host: req.headers.host ?? null,
      sni: scheme === 'https' ? (socket.servername || null) : null,
      alpn: scheme === 'https' ? (socket.alpnProtocol || null) : null,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
    }
    record({ service: scheme, ...seen })
    const download = /^\/bytes\/(\d+)$/.exec(req.url)
    if (req.method === 'GET' && download && Number(download[1]) <= MAX_DOWNLOAD) {
      streamBytes(res, Number(download[1]))
      return
    }
    const chunks = []
    let bodyBytes = 0
    req.on('data', (chunk) => {
      if (bodyBytes < MAX_ECHO_BODY) chunks.push(chunk.subarray(0, MAX_ECHO_BODY - bodyBytes))
      bodyBytes += chunk.length
    })
    req.on('end', () => {
      const json = JSON.stringify({ ...seen, bodyBytes, body: Buffer.concat(chunks).toString('utf8') })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) })
      res.end(json)
    })
  }
}

function streamBytes(res, total) {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
  const block = Buffer.alloc(64 * 1024, 0x61)
  let left = total
  const pump = () => {
    while (left > 0) {
      const chunk = left >= block.length ? block : block.subarray(0, left)
      left -= chunk.length
      if (!res.write(chunk)) return res.once('drain', pump)
    }
    res.end()
  }
  pump()
}

// --- TCP and UDP echo (port 7) -------------------------------------------------------------

function tcpEcho() {
  return net.createServer((socket) => {
    record({ service: 'tcp-echo', remoteAddress: socket.remoteAddress, localAddress: socket.localAddress })
    socket.on('error', () => {})
    socket.pipe(socket)
  })
}

function udpEcho() {
  const socket = dgram.createSocket('udp4')
  socket.on('message', (message, from) => {
    record({ service: 'udp-echo', remoteAddress: from.address, bytes: message.length })
    socket.send(message, from.port, from.address)
  })
  return socket
}

// --- DNS ---------------------------------------------------------------------------------

function parseQuery(buf) {
  if (buf.length < 12) return null
  const flags = buf.readUInt16BE(2)
  if ((flags & 0x8000) !== 0 || buf.readUInt16BE(4) !== 1) return null
  const labels = []
  let pos = 12
  for (;;) {
    if (pos >= buf.length) return null
    const length = buf[pos]
    if (length === 0) break
    if (length > 63 || pos + 1 + length > buf.length) return null
    labels.push(buf.subarray(pos + 1, pos + 1 + length).toString('latin1'))
    pos += 1 + length
  }
  pos += 1
  if (pos + 4 > buf.length) return null
  return {
    id: buf.readUInt16BE(0), flags, name: labels.join('.'), type: buf.readUInt16BE(pos),
    question: buf.subarray(12, pos + 4),
  }
}

function encodeName(name) {
  const parts = name.split('.').filter((label) => label !== '')
  return Buffer.concat([
    ...parts.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'latin1')])),
    Buffer.from([0]),
  ])
}

function resourceRecord(name, type, data) {
  const fixed = Buffer.alloc(10)
  fixed.writeUInt16BE(type, 0)
  fixed.writeUInt16BE(1, 2) // IN
  fixed.writeUInt32BE(60, 4)
  fixed.writeUInt16BE(data.length, 8)
  return Buffer.concat([encodeName(name), fixed, data])
}

// The table's entry for `name`: exact, else the nearest '*.' wildcard above it.
function lookup(name) {
  const key = name.toLowerCase().replace(/\.$/, '')
  if (Object.hasOwn(dnsTable, key)) return dnsTable[key]
  const labels = key.split('.')
  for (let i = 1; i < labels.length; i++) {
    const wildcard = '*.' + labels.slice(i).join('.')
    if (Object.hasOwn(dnsTable, wildcard)) return dnsTable[wildcard]
  }
  return undefined
}

function answer(query) {
  const answers = []
  let rcode = 0
  let name = query.name
  let entry = lookup(name)
  if (entry === undefined) rcode = 3 // NXDOMAIN
  for (let hops = 0; entry?.cname !== undefined && hops < 8; hops++) {
    answers.push(resourceRecord(name, 5, encodeName(entry.cname)))
    name = entry.cname
    entry = lookup(name)
  }
  if (entry !== undefined && entry.cname === undefined && (query.type === 1 || query.type === 255)) {
    for (const address of [entry].flat()) {
      answers.push(resourceRecord(name, 1, Buffer.from(address.split('.').map(Number))))
    }
  }
  const header = Buffer.alloc(12)
  header.writeUInt16BE(query.id, 0)
  // QR, the query's opcode and RD, AA, RA, the rcode.
  header.writeUInt16BE(0x8000 | (query.flags & 0x7900) | 0x0400 | 0x0080 | rcode, 2)
  header.writeUInt16BE(1, 4)
  header.writeUInt16BE(answers.length, 6)
  return Buffer.concat([header, query.question, ...answers])
}

function dnsUdp() {
  const socket = dgram.createSocket('udp4')
  socket.on('message', (message, from) => {
    const query = parseQuery(message)
    if (!query) return
    record({ service: 'dns', transport: 'udp', remoteAddress: from.address, name: query.name, type: query.type })
    socket.send(answer(query), from.port, from.address)
  })
  return socket
}

function dnsTcp() {
  return net.createServer((socket) => {
    let pending = Buffer.alloc(0)
    socket.on('error', () => {})
    socket.on('data', (data) => {
      pending = Buffer.concat([pending, data])
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const message = pending.subarray(2, 2 + pending.readUInt16BE(0))
        pending = pending.subarray(2 + message.length)
        const query = parseQuery(message)
        if (!query) return socket.destroy()
        record({ service: 'dns', transport: 'tcp', remoteAddress: socket.remoteAddress, name: query.name, type: query.type })
        const reply = answer(query)
        const length = Buffer.alloc(2)
        length.writeUInt16BE(reply.length)
        socket.write(Buffer.concat([length, reply]))
      }
    })
  })
}

// --- start and control -------------------------------------------------------------------

function listen(server, port, address) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    if (server instanceof dgram.Socket) server.bind(port, address, resolve)
    else server.listen(port, address, resolve)
  })
}

async function start(config) {
  dnsTable = config.dns ?? {}
  const tls = { cert: config.cert, key: config.key, ALPNProtocols: ['http/1.1'] }
  const listening = []
  for (const host of config.hosts) {
    listening.push(listen(http.createServer(echo('http')), 80, host))
    listening.push(listen(https.createServer(tls, echo('https')), 443, host))
    listening.push(listen(tcpEcho(), 7, host))
    listening.push(listen(udpEcho(), 7, host))
  }
  listening.push(listen(dnsUdp(), 53, config.dnsAddress))
  listening.push(listen(dnsTcp(), 53, config.dnsAddress))
  await Promise.all(listening)
}

function reply(message) {
  process.stdout.write(JSON.stringify(message) + '\n')
}

const lines = readline.createInterface({ input: process.stdin })
let started = false
lines.on('line', (line) => {
  if (!started) {
    started = true
    start(JSON.parse(line)).then(() => reply({ ready: true }), (error) => {
      reply({ error: String(error) })
      process.exit(1)
    })
    return
  }
  const request = JSON.parse(line)
  if (request.op === 'setDns') {
    dnsTable = request.table
    reply({ id: request.id, ok: true })
  } else if (request.op === 'log') {
    reply({ id: request.id, ok: true, result: log })
  } else if (request.op === 'clearLog') {
    log.length = 0
    reply({ id: request.id, ok: true })
  } else {
    reply({ id: request.id, ok: false, error: `unknown op ${request.op}` })
  }
})
// The test process has gone (or stopped us): nothing may outlive it in the namespace.
lines.on('close', () => process.exit(0))
