// The fake internet (helpers/fakenet.js) from the host, before any sandbox uses it: its
// HTTP, TLS, echo and DNS servers answer at their TEST-NET addresses, TLS verifies only
// with its CA, and stop() leaves nothing behind, also after a test process was killed.
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
import { FakeNet, HOSTS, DNS_SERVER, LINK, LOCK_PATH, ROUTED } from './helpers/fakenet.js'

const run = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))

let fake
before(async () => {
  fake = await FakeNet.start({ dns: { 'api.example.test': '198.51.100.10' } })
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
