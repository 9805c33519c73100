// The servers of the fake internet (helpers/fakenet.js starts this inside its network
// namespace with `ip netns exec`). Never run it on the host: it binds TEST-NET addresses
// that only exist inside that namespace.
//
// stdin: the first line is the configuration (JSON: hosts, dnsAddress, cert, key, dns,
// socks, routed); then one JSON request per line ({id, op: 'setDns' | 'setSocks' | 'log' |
// 'clearLog', table | socks}), each answered on stdout as {id, ok, result | error}. The
// first stdout line is {ready: true} once every server listens (or {error} before
// exiting). EOF on stdin (the test process has gone, however it died) ends this process,
// so the namespace empties with it.
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

// --- SOCKS5 (RFC 1928 CONNECT, RFC 1929 username/password) ----------------------------------
//
// One proxy at socks.address:socks.port. With a username it accepts only method 0x02 and
// those credentials; without, only 0x00. CONNECT only (other commands: REP 0x07), to an
// IPv4 address or a name the fake's DNS table holds (IPv6: REP 0x08), and only inside the
// fake internet's ranges (anything else: REP 0x02, so nothing leaves the fake); it connects
// from socks.address, so the echo servers see the proxy as the client. Each tunnel is a
// log entry ({service: 'socks', outcome: 'tunnel', username, destination, port, bytesOut,
// bytesIn, closed}, its counters updated as bytes move); each refusal one with the outcome
// 'auth-failed', 'no-acceptable-method', 'not-allowed', 'unsupported', 'unreachable' or
// 'bad-request'. Modes for the tests of a broken proxy: 'socks5' (the default), 'silent'
// (accepts and never answers), 'http' (answers like an HTTP server). Disabled: nothing
// listens (connections are refused) and open tunnels are cut.

const SOCKS_HANDSHAKE_TIMEOUT_MS = 10000
const REP = { ok: 0, failure: 1, notAllowed: 2, netUnreachable: 3, hostUnreachable: 4, refused: 5,
  command: 7, addressType: 8 }

let socksConfig = null // { address, port, username, password, enabled, mode }
let socksServer = null
const socksSockets = new Set()

function ipv4ToInt(text) {
  return text.split('.').reduce((value, octet) => value * 256 + Number(octet), 0)
}

function inRouted(address) {
  const ip = ipv4ToInt(address)
  return socksConfig.routed.some((cidr) => {
    const [base, prefix] = cidr.split('/')
    const size = 2 ** (32 - Number(prefix))
    const first = Math.floor(ipv4ToInt(base) / size) * size
    return ip >= first && ip < first + size
  })
}

// Reads exact byte counts from a socket until the handshake is over, then hands the rest
// on.
function byteReader(socket) {
  let buffered = Buffer.alloc(0)
  let wake = null
  let ended = false
  const onData = (data) => {
    buffered = Buffer.concat([buffered, data])
    wake?.()
  }
  const onEnd = () => {
    ended = true
    wake?.()
  }
  socket.on('data', onData)
  socket.on('end', onEnd)
  socket.on('close', onEnd)
  return {
    async read(n) {
      while (buffered.length < n) {
        if (ended) throw new Error('closed during the handshake')
        await new Promise((resolve) => { wake = resolve })
        wake = null
      }
      const out = buffered.subarray(0, n)
      buffered = buffered.subarray(n)
      return out
    },
    // Stops reading (the socket is paused) and returns what came after the handshake.
    detach() {
      socket.pause()
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      return buffered
    },
  }
}

function socksReply(socket, rep, bound = null) {
  const address = bound?.address && /^\d+\.\d+\.\d+\.\d+$/.test(bound.address)
    ? bound.address.split('.').map(Number) : [0, 0, 0, 0]
  const port = bound?.port ?? 0
  socket.write(Buffer.from([5, rep, 0, 1, ...address, port >> 8, port & 0xff]))
}

function repForError(error) {
  return { ECONNREFUSED: REP.refused, EHOSTUNREACH: REP.hostUnreachable,
    ENETUNREACH: REP.netUnreachable }[error.code] ?? REP.failure
}

async function socksHandshake(socket, reader, seen) {
  const [version, count] = await reader.read(2)
  if (version !== 5) return socket.destroy()
  const methods = [...await reader.read(count)]
  const wanted = typeof socksConfig.username === 'string' ? 2 : 0
  if (!methods.includes(wanted)) {
    record({ ...seen, outcome: 'no-acceptable-method', methods })
    return socket.end(Buffer.from([5, 0xff]))
  }
  socket.write(Buffer.from([5, wanted]))
  if (wanted === 2) {
    const [authVersion, userLength] = await reader.read(2)
    const username = (await reader.read(userLength)).toString('utf8')
    const [passwordLength] = await reader.read(1)
    const password = (await reader.read(passwordLength)).toString('utf8')
    seen.username = username
    if (authVersion !== 1 || username !== socksConfig.username || password !== socksConfig.password) {
      record({ ...seen, outcome: 'auth-failed' })
      return socket.end(Buffer.from([1, 1]))
    }
    socket.write(Buffer.from([1, 0]))
  }
  const [requestVersion, command, , addressType] = await reader.read(4)
  let destination = null
  if (addressType === 1) {
    destination = [...await reader.read(4)].join('.')
  } else if (addressType === 3) {
    const [length] = await reader.read(1)
    seen.destinationName = (await reader.read(length)).toString('latin1')
    const entry = lookup(seen.destinationName)
    destination = entry === undefined || entry.cname !== undefined ? null : [entry].flat()[0]
  } else if (addressType === 4) {
    await reader.read(16)
  }
  const port = (await reader.read(2)).readUInt16BE(0)
  Object.assign(seen, { destination, port, command })
  if (requestVersion !== 5) {
    record({ ...seen, outcome: 'bad-request' })
    return socket.destroy()
  }
  const refuse = (outcome, rep) => {
    record({ ...seen, outcome })
    socksReply(socket, rep)
    socket.end()
  }
  if (command !== 1) return refuse('unsupported', REP.command)
  if (addressType !== 1 && addressType !== 3) return refuse('unsupported', REP.addressType)
  if (destination === null) return refuse('unreachable', REP.hostUnreachable)
  // Nothing leaves the fake internet through its proxy.
  if (!inRouted(destination)) return refuse('not-allowed', REP.notAllowed)
  socksTunnel(socket, reader, seen)
}

function socksTunnel(socket, reader, seen) {
  const upstream = net.connect({ host: seen.destination, port: seen.port,
    localAddress: socksConfig.address, allowHalfOpen: true })
  let entry = null
  socksSockets.add(upstream)
  upstream.once('close', () => socksSockets.delete(upstream))
  upstream.once('error', (error) => {
    if (entry) return socket.destroy()
    record({ ...seen, outcome: 'unreachable', error: error.code })
    socksReply(socket, repForError(error))
    socket.end()
  })
  upstream.once('connect', () => {
    socket.setTimeout(0)
    entry = { time: Date.now(), ...seen, outcome: 'tunnel', bytesOut: 0, bytesIn: 0, closed: false }
    log.push(entry)
    if (log.length > MAX_LOG) log.shift()
    socksReply(socket, REP.ok, { address: upstream.localAddress, port: upstream.localPort })
    const early = reader.detach()
    if (early.length > 0) {
      entry.bytesOut += early.length
      upstream.write(early)
    }
    socket.on('data', (data) => { entry.bytesOut += data.length })
    upstream.on('data', (data) => { entry.bytesIn += data.length })
    socket.pipe(upstream)
    upstream.pipe(socket)
    const done = () => {
      entry.closed = true
      socket.destroy()
      upstream.destroy()
    }
    socket.once('close', done)
    upstream.once('close', done)
    socket.resume()
  })
}

function socksConnection(socket) {
  socksSockets.add(socket)
  socket.once('close', () => socksSockets.delete(socket))
  socket.on('error', () => {})
  const seen = { service: 'socks', remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }
  if (socksConfig.mode === 'silent') {
    record({ ...seen, outcome: 'silent' })
    return
  }
  if (socksConfig.mode === 'http') {
    record({ ...seen, outcome: 'http' })
    socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')
    return
  }
  socket.setTimeout(SOCKS_HANDSHAKE_TIMEOUT_MS, () => socket.destroy())
  const reader = byteReader(socket)
  socksHandshake(socket, reader, seen).catch(() => socket.destroy())
}

// Applies a change ({enabled, username, password, mode}); listens or stops as asked.
async function setSocks(change) {
  Object.assign(socksConfig, change)
  if (socksConfig.enabled && !socksServer) {
    // Half-open: a client's FIN after its request must not cut the answer.
    const server = net.createServer({ allowHalfOpen: true }, socksConnection)
    await listen(server, socksConfig.port, socksConfig.address)
    socksServer = server
  } else if (!socksConfig.enabled && socksServer) {
    const server = socksServer
    socksServer = null
    const closed = new Promise((resolve) => server.close(resolve))
    for (const socket of socksSockets) socket.destroy()
    await closed
  }
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
  socksConfig = { enabled: true, mode: 'socks5', routed: config.routed, ...config.socks }
  if (socksConfig.enabled) {
    socksConfig.enabled = false
    await setSocks({ enabled: true })
  }
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
  } else if (request.op === 'setSocks') {
    setSocks(request.socks).then(() => reply({ id: request.id, ok: true }),
      (error) => reply({ id: request.id, ok: false, error: String(error) }))
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
