// The fake internet (helpers/fakenet.js) from the host, before any sandbox uses it: its
// HTTP, TLS, echo, DNS and SOCKS5 servers answer at their TEST-NET addresses, TLS verifies
// only with its CA, and stop() leaves nothing behind, also after a test process was killed.
// Root; ctest runs it with RESOURCE_LOCK fakenet.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { Resolver } from 'node:dns/promises'
import dgram from 'node:dgram'
import { existsSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { FakeNet, HOSTS, DNS_SERVER, LINK, LOCK_PATH, ROUTED, SOCKS } from './helpers/fakenet.js'

const run = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))

let fake
before(async () => {
  fake = await FakeNet.start({ dns: { 'api.example.test': '198.51.100.10' },
    socks: { username: 'alice', password: 'correct horse' } })
})
after(async () => {
  await fake?.stop()
})

function get(module, options) {
  return new Promise((resolve, reject) => {
    const req = module.get({ agent: false, timeout: 10000, ...options }, (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', reject)
  })
}

async function hostState(fakeNet) {
  const netns = (await run('ip', ['netns', 'list'])).stdout
  const routes = await Promise.all(ROUTED.map(async (cidr) =>
    (await run('ip', ['-4', 'route', 'show', cidr])).stdout.trim()))
  let link = true
  try {
    await run('ip', ['link', 'show', 'dev', fakeNet.hostLink])
  } catch {
    link = false
  }
  return { netns: netns.includes(fakeNet.netns), routes: routes.filter(Boolean), link }
}

test('the HTTP echo servers answer from both TEST-NET hosts with what they received', async () => {
  for (const host of HOSTS) {
    const { status, body } = await get(http, {
      host, path: '/some/path?q=1', headers: { Host: 'api.example.test', 'X-Probe': 'one' },
    })
    assert.equal(status, 200)
    const seen = JSON.parse(body)
    assert.equal(seen.scheme, 'http')
    assert.equal(seen.localAddress, host)
    assert.equal(seen.localPort, 80)
    assert.equal(seen.remoteAddress, LINK.host)
    assert.equal(seen.method, 'GET')
    assert.equal(seen.path, '/some/path?q=1')
    assert.equal(seen.host, 'api.example.test')
    assert.equal(seen.headers['x-probe'], 'one')
    assert.equal(seen.sni, null)
  }
})

test('curl reaches the echo over HTTP and, with the CA, over HTTPS', async () => {
  const plain = await run('curl', ['-sS', '--max-time', '10', '-H', 'Host: other.test',
    '-d', 'payload', `http://${HOSTS[0]}/posted`])
  const seen = JSON.parse(plain.stdout)
  assert.equal(seen.method, 'POST')
  assert.equal(seen.host, 'other.test')
  assert.equal(seen.body, 'payload')
  assert.equal(seen.bodyBytes, 7)

  const secure = await run('curl', ['-sS', '--max-time', '10', '--cacert', fake.caPath,
    '--resolve', `api.example.test:443:${HOSTS[1]}`, 'https://api.example.test/tls'])
  const tlsSeen = JSON.parse(secure.stdout)
  assert.equal(tlsSeen.scheme, 'https')
  assert.equal(tlsSeen.sni, 'api.example.test')
  assert.equal(tlsSeen.localAddress, HOSTS[1])
  assert.equal(tlsSeen.alpn, 'http/1.1')
})

test('TLS verifies against the CA and reports the SNI; without the CA it fails', async () => {
  const { body } = await get(https, {
    host: HOSTS[0], servername: 'deep.example.test', path: '/x', ca: fake.ca,
    headers: { Host: 'deep.example.test' },
  })
  const seen = JSON.parse(body)
  assert.equal(seen.sni, 'deep.example.test')
  assert.equal(seen.host, 'deep.example.test')
  // By address: the certificate holds both hosts' addresses.
  const byAddress = JSON.parse((await get(https, { host: HOSTS[1], ca: fake.ca })).body)
  assert.equal(byAddress.localAddress, HOSTS[1])

  await assert.rejects(get(https, { host: HOSTS[0], servername: 'api.example.test' }),
    { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
  await assert.rejects(get(https, { host: HOSTS[0], servername: 'api.elsewhere.test', ca: fake.ca }),
    { code: 'ERR_TLS_CERT_ALTNAME_INVALID' })
})

test('the DNS server answers from the table, follows CNAMEs and says NXDOMAIN otherwise', async () => {
  const resolver = new Resolver({ timeout: 2000, tries: 2 })
  resolver.setServers([DNS_SERVER])
  assert.deepEqual(await resolver.resolve4('api.example.test'), ['198.51.100.10'])
  await fake.setDns({
    'API.example.test.': ['198.51.100.10', '203.0.113.10'],
    'alias.example.test': { cname: 'api.example.test' },
    '*.wild.test': '203.0.113.10',
  })
  assert.deepEqual((await resolver.resolve4('api.example.test')).sort(), ['198.51.100.10', '203.0.113.10'])
  assert.deepEqual(await resolver.resolveCname('alias.example.test'), ['api.example.test'])
  assert.deepEqual((await resolver.resolve4('alias.example.test')).sort(), ['198.51.100.10', '203.0.113.10'])
  assert.deepEqual(await resolver.resolve4('a.b.wild.test'), ['203.0.113.10'])
  await assert.rejects(resolver.resolve4('nowhere.example.test'), { code: 'ENOTFOUND' })
  // A name in the table has no AAAA: an empty answer, not NXDOMAIN.
  await assert.rejects(resolver.resolve6('api.example.test'), { code: 'ENODATA' })
  await assert.rejects(fake.setDns({ 'bad.test': '300.1.1.1' }), /expected an IPv4 address/)
})

test('the DNS server answers over TCP too', async () => {
  // A query for api.example.test, type A, id 0x4242, framed by its length.
  const name = Buffer.from('\x03api\x07example\x04test\x00', 'latin1')
  const query = Buffer.concat([Buffer.from([0x42, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), name,
    Buffer.from([0, 1, 0, 1])])
  const reply = await new Promise((resolve, reject) => {
    const socket = net.connect(53, DNS_SERVER, () => {
      socket.write(Buffer.concat([Buffer.from([0, query.length]), query]))
    })
    let data = Buffer.alloc(0)
    socket.on('data', (d) => {
      data = Buffer.concat([data, d])
      if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) {
        socket.end()
        resolve(data.subarray(2))
      }
    })
    socket.on('error', reject)
  })
  assert.equal(reply.readUInt16BE(0), 0x4242)
  assert.equal(reply.readUInt16BE(2) & 0x800f, 0x8000) // a reply, NOERROR
  assert.equal(reply.readUInt16BE(6), 2) // the two addresses setDns gave
})

test('the TCP and UDP echoes on port 7 send back what they get', async () => {
  const echoed = await new Promise((resolve, reject) => {
    const socket = net.connect(7, HOSTS[1], () => socket.end('ping over tcp'))
    let data = ''
    socket.on('data', (d) => { data += d })
    socket.on('end', () => resolve(data))
    socket.on('error', reject)
  })
  assert.equal(echoed, 'ping over tcp')
  const socket = dgram.createSocket('udp4')
  try {
    const reply = new Promise((resolve) => socket.once('message', (m) => resolve(m.toString())))
    socket.send('ping over udp', 7, HOSTS[0])
    assert.equal(await reply, 'ping over udp')
  } finally {
    socket.close()
  }
})

test('the log keeps what the servers received', async () => {
  await fake.clearLog()
  await get(http, { host: HOSTS[1], path: '/logged', headers: { Host: 'logged.example.test' } })
  const entries = await fake.log()
  assert.equal(entries.length, 1)
  assert.equal(entries[0].service, 'http')
  assert.equal(entries[0].host, 'logged.example.test')
  assert.equal(entries[0].path, '/logged')
  assert.equal(entries[0].remoteAddress, LINK.host)
})

// --- the SOCKS5 proxy, driven by a hand-written client (RFC 1928 and RFC 1929) ------------

// Reads exact byte counts from a socket; `rest()` is what came after.
function byteReader(socket) {
  let buffered = Buffer.alloc(0)
  let ended = false
  let wake = () => {}
  socket.on('data', (d) => { buffered = Buffer.concat([buffered, d]); wake() })
  socket.on('close', () => { ended = true; wake() })
  return {
    async read(n) {
      while (buffered.length < n) {
        if (ended) throw new Error(`closed after ${buffered.length} of ${n} bytes`)
        await new Promise((resolve) => { wake = resolve })
      }
      const out = buffered.subarray(0, n)
      buffered = buffered.subarray(n)
      return out
    },
    async readToEnd() {
      while (!ended) await new Promise((resolve) => { wake = resolve })
      return buffered
    },
  }
}

// A CONNECT to host:port through the fake's proxy. Resolves with { socket, reader, stage,
// code }: stage 'method' (code: the method chosen), 'auth' (code: RFC 1929 status) or
// 'connect' (code: REP, bound: BND.ADDR:BND.PORT).
async function socksConnect({ host, port, username = fake.socks.username, password = fake.socks.password }) {
  const socket = net.connect(SOCKS.port, SOCKS.address)
  socket.setTimeout(10000, () => socket.destroy(new Error('SOCKS5 handshake timed out')))
  await once(socket, 'connect')
  socket.on('error', () => {}) // then 'close', which ends the reader
  const reader = byteReader(socket)
  const method = username ? 2 : 0
  socket.write(Buffer.from([5, 1, method]))
  const [version, chosen] = await reader.read(2)
  assert.equal(version, 5)
  if (chosen !== method) return { socket, reader, stage: 'method', code: chosen }
  if (username) {
    const user = Buffer.from(username)
    const pass = Buffer.from(password)
    socket.write(Buffer.concat([Buffer.from([1, user.length]), user, Buffer.from([pass.length]), pass]))
    const [authVersion, status] = await reader.read(2)
    assert.equal(authVersion, 1)
    if (status !== 0) return { socket, reader, stage: 'auth', code: status }
  }
  socket.write(Buffer.from([5, 1, 0, 1, ...host.split('.').map(Number), port >> 8, port & 0xff]))
  const [replyVersion, rep, , addressType] = await reader.read(4)
  assert.equal(replyVersion, 5)
  if (rep !== 0) return { socket, reader, stage: 'connect', code: rep }
  assert.equal(addressType, 1)
  const bound = await reader.read(6)
  socket.setTimeout(0)
  return { socket, reader, stage: 'connect', code: 0,
    bound: `${[...bound.subarray(0, 4)].join('.')}:${bound.readUInt16BE(4)}` }
}

// Polls the log until `predicate` finds an entry (5 s).
async function logEntry(predicate) {
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(20)) {
    const found = (await fake.log()).find(predicate)
    if (found) return found
  }
  assert.fail(`no such log entry in ${JSON.stringify(await fake.log())}`)
}

test('the SOCKS5 proxy tunnels HTTP to an echo host, with credentials, and logs the tunnel', async () => {
  assert.deepEqual(fake.socks, { address: '203.0.113.20', port: 1080, username: 'alice',
    password: 'correct horse', enabled: true, mode: 'socks5' })
  await fake.clearLog()
  const tunnel = await socksConnect({ host: HOSTS[0], port: 80 })
  assert.equal(tunnel.code, 0)
  assert.equal(tunnel.bound.split(':')[0], SOCKS.address)
  const request = 'GET /through-socks HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n'
  tunnel.socket.write(request)
  const response = (await tunnel.reader.readToEnd()).toString()
  assert.match(response, /^HTTP\/1\.1 200 /)
  const seen = JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4))
  assert.equal(seen.path, '/through-socks')
  assert.equal(seen.host, 'api.example.test')
  assert.equal(seen.localAddress, HOSTS[0])
  // The echo host saw the proxy, not the client.
  assert.equal(seen.remoteAddress, SOCKS.address)

  const entry = await logEntry((e) => e.service === 'socks' && e.closed)
  assert.equal(entry.outcome, 'tunnel')
  assert.equal(entry.username, 'alice')
  assert.equal(entry.remoteAddress, LINK.host)
  assert.equal(entry.destination, HOSTS[0])
  assert.equal(entry.port, 80)
  assert.equal(entry.bytesOut, Buffer.byteLength(request))
  assert.equal(entry.bytesIn, Buffer.byteLength(response))
  assert.ok((await fake.log()).some((e) => e.service === 'http' && e.path === '/through-socks'))
})

test('curl, a real SOCKS5 client, tunnels through the proxy; with a wrong password it fails', async () => {
  const proxy = ['--socks5', `${SOCKS.address}:${SOCKS.port}`]
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', ...proxy,
    '--proxy-user', 'alice:correct horse', `http://${HOSTS[1]}/by-curl`])
  const seen = JSON.parse(stdout)
  assert.equal(seen.path, '/by-curl')
  assert.equal(seen.remoteAddress, SOCKS.address)
  await assert.rejects(run('curl', ['-sS', '--max-time', '10', ...proxy,
    '--proxy-user', 'alice:wrong', `http://${HOSTS[1]}/by-curl`]), { code: 97 }) // CURLE_PROXY
})

test('the SOCKS5 proxy refuses a wrong password, no method it accepts and the world outside', async () => {
  await fake.clearLog()
  const wrong = await socksConnect({ host: HOSTS[0], port: 80, password: 'wrong horse' })
  assert.deepEqual([wrong.stage, wrong.code], ['auth', 1])
  await once(wrong.socket, 'close')
  const refused = await logEntry((e) => e.service === 'socks' && e.outcome === 'auth-failed')
  assert.equal(refused.username, 'alice')

  // It wants credentials: "no authentication" alone is not acceptable (0xFF).
  const anonymous = await socksConnect({ host: HOSTS[0], port: 80, username: null })
  assert.deepEqual([anonymous.stage, anonymous.code], ['method', 0xff])

  // Nothing outside the fake internet's ranges: "not allowed by ruleset", no packet sent.
  const outside = await socksConnect({ host: '192.0.2.1', port: 80 })
  assert.deepEqual([outside.stage, outside.code], ['connect', 2])
  // A closed port in the fake: "connection refused".
  const closed = await socksConnect({ host: HOSTS[1], port: 81 })
  assert.deepEqual([closed.stage, closed.code], ['connect', 5])
  const outcomes = (await fake.log()).filter((e) => e.service === 'socks').map((e) => e.outcome)
  assert.deepEqual(outcomes, ['auth-failed', 'no-acceptable-method', 'not-allowed', 'unreachable'])
})

test('a stopped SOCKS5 proxy refuses connections and cuts its tunnels; a restarted one works', async () => {
  const open = await socksConnect({ host: HOSTS[1], port: 7 })
  assert.equal(open.code, 0)
  open.socket.write('echo')
  assert.equal((await open.reader.read(4)).toString(), 'echo')
  const cut = once(open.socket, 'close')
  await fake.setSocks({ enabled: false })
  assert.equal(fake.socks.enabled, false)
  await cut
  await assert.rejects(socksConnect({ host: HOSTS[0], port: 80 }), { code: 'ECONNREFUSED' })

  await fake.setSocks({ enabled: true, username: 'bob', password: 'other' })
  const again = await socksConnect({ host: HOSTS[1], port: 7 })
  assert.equal(again.code, 0)
  again.socket.end('back')
  assert.equal((await again.reader.readToEnd()).toString(), 'back')
  await fake.setSocks({ username: 'alice', password: 'correct horse' })
})

test('the SOCKS5 proxy can play a broken one: silent, or an HTTP server', async () => {
  await fake.clearLog()
  await fake.setSocks({ mode: 'silent' })
  const silent = net.connect(SOCKS.port, SOCKS.address)
  await once(silent, 'connect')
  let answered = 0
  silent.on('data', (d) => { answered += d.length })
  silent.write(Buffer.from([5, 1, 2]))
  await logEntry((e) => e.service === 'socks' && e.outcome === 'silent')
  // Silence cannot be awaited: a short look that it stays silent and open.
  await sleep(300)
  assert.equal(answered, 0)
  assert.equal(silent.readyState, 'open')
  silent.destroy()

  await fake.setSocks({ mode: 'http' })
  const socket = net.connect(SOCKS.port, SOCKS.address)
  const reader = byteReader(socket)
  socket.write(Buffer.from([5, 1, 2]))
  assert.match((await reader.readToEnd()).toString(), /^HTTP\/1\.1 400 /)
  await fake.setSocks({ mode: 'socks5' })
  await assert.rejects(fake.setSocks({ mode: 'socks4' }), /mode is 'socks5', 'silent' or 'http'/)
  await assert.rejects(fake.setSocks({ password: '' }), /1 to 255 bytes/)
})

test('one FakeNet per process: a second start() is refused at once', async () => {
  await assert.rejects(FakeNet.start(), /running in this process already/)
})

test('stop() removes the namespace, link, routes and files, and can be called again', async () => {
  assert.deepEqual(await hostState(fake), { netns: true, routes: ROUTED.map((cidr) =>
    `${cidr} via ${LINK.fake} dev ${fake.hostLink}`), link: true })
  const dir = fake.dir
  await fake.stop()
  await fake.stop()
  assert.deepEqual(await hostState(fake), { netns: false, routes: [], link: false })
  assert.equal(existsSync(dir), false)
  await assert.rejects(fake.setDns({}), /not running/)
  // The lock is free again.
  await run('flock', ['--nonblock', LOCK_PATH, 'true'])
})

// Starts a FakeNet in a child node process, which then runs `then` (JS source).
async function startInChild(then) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    import { FakeNet } from ${JSON.stringify(join(here, 'helpers', 'fakenet.js'))}
    const fake = await FakeNet.start()
    console.log(JSON.stringify({ netns: fake.netns, hostLink: fake.hostLink, dir: fake.dir }))
    ${then}`], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
  const left = await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      if (out.includes('\n')) resolve(JSON.parse(out))
    })
    exited.then((code) => reject(new Error(`the child exited with ${code}`)))
  })
  return { child, exited, left }
}

test('a process that exits without stop() leaves nothing behind', async () => {
  const { exited, left } = await startInChild('process.exit(3)')
  assert.equal(await exited, 3)
  assert.deepEqual(await hostState(left), { netns: false, routes: [], link: false })
  assert.equal(existsSync(left.dir), false)
  await run('flock', ['--nonblock', LOCK_PATH, 'true'])
})

test('a FakeNet left by a killed process is cleaned up by the next start', async () => {
  // A child process starts a FakeNet and is killed with SIGKILL: no stop(), no exit hook.
  const { child, exited, left } = await startInChild('setInterval(() => {}, 1000)')
  child.kill('SIGKILL')
  assert.equal(await exited, 'SIGKILL')
  assert.equal((await hostState(left)).link, true, 'the killed process left its link')
  assert.equal(existsSync(left.dir), true)

  const next = await FakeNet.start()
  try {
    assert.deepEqual(await hostState(left), { netns: false, routes: ROUTED.map((cidr) =>
      `${cidr} via ${LINK.fake} dev ${next.hostLink}`), link: false })
    assert.equal(existsSync(left.dir), false)
    const seen = JSON.parse((await get(http, { host: HOSTS[0] })).body)
    assert.equal(seen.remoteAddress, LINK.host)
  } finally {
    await next.stop()
  }
  assert.deepEqual(await hostState(next), { netns: false, routes: [], link: false })
})
