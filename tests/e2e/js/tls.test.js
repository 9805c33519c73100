// The TLS listener: `isoboxd dev-cert` makes a CA and a *.isobox.test certificate; the SDK
// drives the control plane and envd over https, and `https://${sandbox.getHost(8000)}`
// reaches a server inside the sandbox, names resolved to 127.0.0.1 by the test.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import https from 'node:https'
import tls from 'node:tls'
import { rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { Sandbox } from 'e2b'
import { startTlsDaemon } from './harness.js'

const run = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))

let daemon
let certDir
let ca
before(async () => {
  ;({ daemon, ca, certDir } = await startTlsDaemon())
})
after(async () => {
  await daemon?.stop()
  if (certDir) rmSync(certDir, { recursive: true, force: true })
})

// Every name resolves to 127.0.0.1, as wildcard DNS for *.isobox.test would.
function loopback(hostname, options, callback) {
  if (options?.all) callback(null, [{ address: '127.0.0.1', family: 4 }])
  else callback(null, '127.0.0.1', 4)
}

// An https request to `host` on the daemon's TLS port, verified against the test CA.
function request(host, { path = '/', method = 'GET', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host, port: daemon.tlsPort, path, method, headers, ca, lookup: loopback, servername: host,
      ALPNProtocols: ['http/1.1'], agent: false,
    }, (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({
        status: res.statusCode, body, alpn: res.socket.alpnProtocol, tls: res.socket.getProtocol(),
      }))
    })
    req.on('error', reject)
    req.end()
  })
}

// Starts, through the plain port and the SDK, a minimal upgrade server on port 8001 that
// answers 101 and then echoes every byte upper-cased.
async function startUpgradeServer(sandboxId) {
  const server = [
    'import socket',
    's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
    's.bind(("127.0.0.1", 8001)); s.listen()',
    'while True:',
    '    c, _ = s.accept(); data = b""',
    '    while b"\\r\\n\\r\\n" not in data: data += c.recv(4096)',
    '    c.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n")',
    '    while chunk := c.recv(4096): c.sendall(chunk.upper())',
    '    c.close()',
  ].join('\n')
  const sandbox = await Sandbox.connect(sandboxId)
  await sandbox.files.write('upgrade_server.py', server)
  await sandbox.commands.run('python3 upgrade_server.py', { background: true, timeoutMs: 0 })
}

// Sends an upgrade request over TLS to `host`, retrying until the server answers 101, then
// writes `text` through the tunnel and returns what comes back.
async function upgradeAndEcho(host, text) {
  const deadline = Date.now() + 15000
  for (;;) {
    const socket = await new Promise((resolve, reject) => {
      const req = https.request({ host, port: daemon.tlsPort, ca, lookup: loopback,
        servername: host, agent: false, headers: { Connection: 'Upgrade', Upgrade: 'echo' } })
      req.on('upgrade', (res, upgraded) => resolve(upgraded))
      req.on('response', (res) => { res.resume(); resolve(null) })
      req.on('error', reject)
      req.end()
    })
    if (socket) {
      const echoed = new Promise((resolve) => socket.once('data', (d) => resolve(d.toString())))
      socket.write(text)
      const out = await echoed
      socket.destroy()
      return out
    }
    if (Date.now() > deadline) throw new Error('the upgrade server did not answer 101')
    await sleep(100)
  }
}

test('dev-cert rejects a domain that is not a DNS name', async () => {
  await assert.rejects(
    run(process.env.ISOBOXD, ['dev-cert', '--domain', 'bad domain', '--out', certDir]),
    (err) => err.code === 1 && /domain 'bad domain' is not a DNS name/.test(err.stderr))
})

test('the TLS port serves the control plane with TLS 1.2+ and ALPN http/1.1', async () => {
  const health = await request('localhost', { path: '/isobox/health' })
  assert.equal(health.status, 200)
  assert.equal(JSON.parse(health.body).status, 'ok')
  assert.equal(health.alpn, 'http/1.1')
  assert.match(health.tls, /^TLSv1\.[23]$/)
  const unauthorized = await request('localhost', { path: '/v2/sandboxes' })
  assert.equal(unauthorized.status, 401)
  // TLS 1.1 and older are refused by the server (its protocol_version alert).
  await assert.rejects(new Promise((resolve, reject) => {
    const socket = tls.connect({ host: 'localhost', port: daemon.tlsPort, ca,
      lookup: loopback, minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }, resolve)
    socket.on('error', reject)
  }), { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' })
})

test('SDK over https: control plane, envd and getHost(port) with the wildcard certificate',
  async () => {
    const origin = `https://localhost:${daemon.tlsPort}`
    const { stdout } = await run(process.execPath, [join(here, 'helpers/tls_sdk_client.mjs')], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: join(certDir, 'ca.pem'),
        E2B_API_URL: origin, E2B_SANDBOX_URL: origin, E2B_API_KEY: daemon.apiKey },
    })
    const result = JSON.parse(stdout.trim().split('\n').pop())
    assert.equal(result.stdout, 'over tls\n')
    assert.equal(result.file, 'hello over https')
    assert.equal(result.host, `8000-${result.sandboxId}.isobox.test`)

    // The server in the sandbox, by its host name, over https.
    const deadline = Date.now() + 15000
    let listing
    for (;;) {
      listing = await request(result.host)
      if (listing.status === 200 || Date.now() > deadline) break
      await sleep(100)
    }
    assert.equal(listing.status, 200)
    assert.match(listing.body, /Directory listing for \//)
    assert.match(listing.body, /hello\.txt/)
    const file = await request(result.host, { path: '/hello.txt' })
    assert.equal(file.body, 'hello over https')

    // An upgraded connection through the TLS port: the server echoes bytes upper-cased.
    await startUpgradeServer(result.sandboxId)
    const echoed = await upgradeAndEcho(result.host.replace(/^8000-/, '8001-'), 'over tls')
    assert.equal(echoed, 'OVER TLS')

    const kill = await request('localhost', { method: 'DELETE',
      path: `/sandboxes/${result.sandboxId}`, headers: { 'X-API-KEY': daemon.apiKey } })
    assert.equal(kill.status, 204)
    const gone = await request(result.host)
    assert.equal(gone.status, 502)
    assert.deepEqual(JSON.parse(gone.body),
      { sandboxId: result.sandboxId, message: 'The sandbox was not found', code: 502 })
  })
