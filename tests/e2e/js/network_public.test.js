// Public traffic and host masking (issue 19, point 7), E2B's shapes, through the unmodified
// SDKs: `network.allowPublicTraffic: false` gives the sandbox a traffic access token that
// isoboxd asks of every request to its ports but envd's (403 otherwise, audited);
// `maskRequestHost` is the Host a sandbox's server sees; `httpsPorts` makes isoboxd speak
// TLS to those ports while its client still speaks plain HTTP. None of it needs the
// sandboxes' egress network: the servers listen on the sandbox's loopback.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Sandbox } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { interpreterFetch, startDaemon } from './harness.js'

const TOKEN_HEADER = 'e2b-traffic-access-token'
const MISSING = "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing"
const INVALID = "Sandbox is secured with traffic access token. Provided token in header 'e2b-traffic-access-token' is invalid"

// An HTTP server for the sandbox: answers every GET with what it received (Host, the
// traffic token header, path) as JSON. /no-length answers without a Content-Length, so
// the body ends when the connection does (over TLS: without a close_notify, as Python's
// ssl sockets close). argv: port [cert key] (TLS when given).
const ECHO_SERVER = `
import http.server, json, ssl, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"host": self.headers.get("Host"),
                           "token": self.headers.get("${TOKEN_HEADER}"),
                           "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path != "/no-length":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Echo)
if len(sys.argv) > 2:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
`

let daemon
const sandboxes = []
before(async () => {
  daemon = await startDaemon()
})
after(async () => {
  for (const sandbox of sandboxes) await sandbox.kill().catch(() => {})
  await daemon?.stop()
})

async function create(Kind, opts) {
  const sandbox = await Kind.create(opts)
  sandboxes.push(sandbox)
  return sandbox
}

// One GET through isoboxd with exactly these headers: { status, body, json }.
function get(headers, path = '/') {
  const url = new URL(daemon.url)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => { body += chunk })
      res.on('end', () => {
        let json
        try { json = JSON.parse(body) } catch { json = undefined }
        resolve({ status: res.statusCode, type: res.headers['content-type'], body, json })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

// Writes `request` to isoboxd as it is and reads the answer up to the close, as text.
function rawExchange(request) {
  const url = new URL(daemon.url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => socket.write(request))
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk) => { text += chunk })
    socket.on('end', () => resolve(text))
    socket.on('error', reject)
  })
}

function routed(sandbox, port, extra = {}) {
  return { 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': String(port), ...extra }
}

// Starts the echo server in the sandbox and waits until isoboxd reaches it (502 until then).
async function startEcho(sandbox, port, headers, tls = []) {
  await sandbox.files.write('/tmp/echo.py', ECHO_SERVER)
  await sandbox.commands.run(['python3', '/tmp/echo.py', port, ...tls].join(' '),
    { background: true })
  const deadline = Date.now() + 15000
  for (;;) {
    const res = await get(routed(sandbox, port, headers))
    if (res.status !== 502 || !/port is not open/.test(res.body)) return res
    if (Date.now() > deadline) throw new Error(`port ${port} did not open: ${res.body}`)
    await sleep(100)
  }
}

async function auditUntil(sandbox, done) {
  const deadline = Date.now() + 20000
  for (;;) {
    const res = await fetch(`${daemon.url}/isobox/audit?sandboxId=${sandbox.sandboxId}&limit=1000`,
      { headers: { 'X-API-KEY': daemon.apiKey } })
    assert.equal(res.status, 200)
    const records = await res.json()
    if (done(records)) return records
    if (Date.now() > deadline) throw new Error('audit: ' + JSON.stringify(records))
    await sleep(100)
  }
}

test('allowPublicTraffic false: the token comes with create and connect; ports need it', async () => {
  const sandbox = await create(Sandbox, { network: { allowPublicTraffic: false } })
  const token = sandbox.trafficAccessToken
  assert.match(token ?? '', /^[A-Za-z0-9]{32}$/)
  assert.notEqual(token, sandbox.envdAccessToken)
  const info = await Sandbox.getInfo(sandbox.sandboxId)
  assert.equal(info.network.allowPublicTraffic, false)
  const connected = await Sandbox.connect(sandbox.sandboxId)
  assert.equal(connected.trafficAccessToken, token)

  // envd (49983) has its own token: the SDK sends no traffic token there and still works.
  assert.equal((await sandbox.commands.run('echo ok')).stdout, 'ok\n')

  const open = await startEcho(sandbox, 8080, { [TOKEN_HEADER]: token })
  assert.equal(open.status, 200)
  // The token is isoboxd's to check: the sandbox's server never sees it. Without a mask,
  // the Host is the client's.
  assert.equal(open.json.token, null)
  assert.equal(open.json.host, new URL(daemon.url).host)

  const missing = await get(routed(sandbox, 8080))
  assert.equal(missing.status, 403)
  assert.match(missing.type, /^application\/json/)
  assert.deepEqual(missing.json, { sandboxId: sandbox.sandboxId, message: MISSING, code: 403 })
  const empty = await get(routed(sandbox, 8080, { [TOKEN_HEADER]: '' }))
  assert.equal(empty.status, 403)
  const wrongToken = token.slice(0, -1) + (token.endsWith('a') ? 'b' : 'a')
  const wrong = await get(routed(sandbox, 8080, { [TOKEN_HEADER]: wrongToken }))
  assert.equal(wrong.status, 403)
  assert.deepEqual(wrong.json, { sandboxId: sandbox.sandboxId, message: INVALID, code: 403 })
  const longer = await get(routed(sandbox, 8080, { [TOKEN_HEADER]: token + 'x' }))
  assert.equal(longer.status, 403)

  // Routed by Host "<port>-<id>.<domain>": the same check.
  const host = `8080-${sandbox.sandboxId}.isobox.test`
  assert.equal((await get({ Host: host })).status, 403)
  const byHost = await get({ Host: host, [TOKEN_HEADER]: token }, '/by-host')
  assert.equal(byHost.status, 200)
  assert.equal(byHost.json.path, '/by-host')

  const records = await auditUntil(sandbox,
    (r) => r.filter((x) => x.action === 'sandbox.unauthorized').length >= 5)
  const refused = records.filter((x) => x.action === 'sandbox.unauthorized')
  for (const record of refused) {
    assert.equal(record.status, 403)
    assert.equal(record.details.port, 8080)
    assert.equal(record.details.method, 'GET')
  }
  assert.deepEqual(refused.map((r) => r.details.reason).sort(), [
    'missing traffic access token', 'missing traffic access token', 'missing traffic access token',
    'wrong traffic access token', 'wrong traffic access token'])
  const log = readFileSync(join(daemon.stateDir, 'audit.log'), 'utf8')
  assert.ok(!log.includes(token), 'the token is never in the audit log')
  assert.ok(!log.includes(wrongToken), 'a presented token is never in the audit log')
})

test('a public sandbox has no token and its ports need none', async () => {
  const sandbox = await create(Sandbox, { network: { allowPublicTraffic: true } })
  assert.equal(sandbox.trafficAccessToken, undefined)
  assert.equal((await Sandbox.getInfo(sandbox.sandboxId)).network.allowPublicTraffic, true)
  const res = await startEcho(sandbox, 8080, {})
  assert.equal(res.status, 200)
  // An HTTP/1.0 answer without a length reaches an HTTP/1.1 client re-framed in chunks,
  // under an HTTP/1.1 status line (node's parser refuses chunks under HTTP/1.0).
  const unsized = await get(routed(sandbox, 8080), '/no-length')
  assert.equal(unsized.status, 200)
  assert.equal(unsized.json.path, '/no-length')
  // The bytes: one last chunk; and an HTTP/1.0 client gets the body up to the close, as
  // chunks are HTTP/1.1's.
  const headers = `E2b-Sandbox-Id: ${sandbox.sandboxId}\r\nE2b-Sandbox-Port: 8080\r\n`
  const http11 = await rawExchange(
    `GET /no-length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers}\r\n`)
  assert.match(http11, /^HTTP\/1\.1 200 /)
  assert.match(http11, /\r\nTransfer-Encoding: chunked\r\n/i)
  assert.ok(http11.endsWith('}\r\n0\r\n\r\n'), JSON.stringify(http11))
  const http10 = await rawExchange(`GET /no-length HTTP/1.0\r\n${headers}\r\n`)
  assert.match(http10, /^HTTP\/1\.0 200 /)
  assert.doesNotMatch(http10, /Transfer-Encoding/i)
  const body = JSON.parse(http10.slice(http10.indexOf('\r\n\r\n') + 4))
  assert.equal(body.path, '/no-length')
})

test('maskRequestHost: the sandbox\'s server sees that Host, ${PORT} replaced', async () => {
  const mask = 'example.test:${PORT}'
  const sandbox = await create(Sandbox, { network: { maskRequestHost: mask } })
  assert.equal((await Sandbox.getInfo(sandbox.sandboxId)).network.maskRequestHost, mask)
  const byHeaders = await startEcho(sandbox, 8081, {})
  assert.equal(byHeaders.status, 200)
  assert.equal(byHeaders.json.host, 'example.test:8081')
  const byHost = await get({ Host: `8081-${sandbox.sandboxId}.isobox.test` })
  assert.equal(byHost.json.host, 'example.test:8081')

  // Checked at create, named in the error; nothing is created.
  for (const bad of ['a b', 'example.test\r\nX-Injected: 1', 'x.test:${PORT}${PORT}', 'x.test:0']) {
    await assert.rejects(Sandbox.create({ network: { maskRequestHost: bad } }),
      /network\.maskRequestHost/)
  }
})

test('httpsPorts: isoboxd speaks TLS to the port and plain HTTP to its client', async () => {
  const sandbox = await create(Sandbox, { network: { httpsPorts: [8443, 8445] } })
  assert.deepEqual((await Sandbox.getInfo(sandbox.sandboxId)).network.httpsPorts, [8443, 8445])
  // A self-signed certificate for the sandbox's server: isoboxd does not verify it (as E2B).
  const certDir = mkdtempSync(join(tmpdir(), 'isobox-public-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt',
      'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(certDir, 'key.pem'),
      '-out', join(certDir, 'cert.pem'), '-days', '1', '-subj', '/CN=sandbox.test'],
    { stdio: 'ignore' })
    for (const name of ['cert.pem', 'key.pem']) {
      await sandbox.files.write(`/tmp/${name}`, readFileSync(join(certDir, name), 'utf8'))
    }
  } finally {
    rmSync(certDir, { recursive: true, force: true })
  }
  const res = await startEcho(sandbox, 8443, {}, ['/tmp/cert.pem', '/tmp/key.pem'])
  assert.equal(res.status, 200)
  assert.equal(res.json.path, '/')
  // An answer that ends with the connection (no length; no close_notify either).
  const unsized = await get(routed(sandbox, 8443), '/no-length')
  assert.equal(unsized.status, 200)
  assert.equal(unsized.json.path, '/no-length')

  // A port in httpsPorts whose server speaks plain HTTP: 502 naming the handshake.
  await sandbox.commands.run('python3 -m http.server 8445 --bind 127.0.0.1', { background: true })
  const deadline = Date.now() + 15000
  let plain
  for (;;) {
    plain = await get(routed(sandbox, 8445))
    if (!/port is not open/.test(plain.body) || Date.now() > deadline) break
    await sleep(100)
  }
  assert.equal(plain.status, 502)
  assert.deepEqual(plain.json, {
    sandboxId: sandbox.sandboxId,
    message: "The sandbox's port 8445 is in network.httpsPorts but did not complete a TLS handshake",
    port: 8445,
    code: 502,
  })

  await assert.rejects(Sandbox.create({ network: { httpsPorts: [49983] } }),
    /network\.httpsPorts.*49983/)
  await assert.rejects(Sandbox.create({ network: { httpsPorts: [8443, 8443] } }),
    /8443 is listed twice/)
  await assert.rejects(Sandbox.create({ network: { httpsPorts: [70000] } }),
    /70000 is not a port/)
})

test('the code interpreter works with allowPublicTraffic false; its port needs the token', async () => {
  const sandbox = await create(CodeSandbox, { network: { allowPublicTraffic: false } })
  assert.ok(sandbox.trafficAccessToken)
  // The SDK sends E2B-Traffic-Access-Token to port 49999 itself.
  assert.equal((await sandbox.runCode('x = 1; x')).text, '1')
  const context = await sandbox.createCodeContext({ language: 'python' })
  assert.equal((await sandbox.runCode('21 * 2', { context })).text, '42')
  assert.ok((await sandbox.listCodeContexts()).some((c) => c.id === context.id))
  await sandbox.removeCodeContext(context)

  // Without it, even with the envd access token: 403 before the interpreter sees it.
  const body = JSON.stringify({ code: '6 * 7' })
  const refused = await interpreterFetch(sandbox, '/execute', { method: 'POST', body })
  assert.equal(refused.status, 403)
  assert.deepEqual(await refused.json(),
    { sandboxId: sandbox.sandboxId, message: MISSING, code: 403 })
  const contexts = await interpreterFetch(sandbox, '/contexts')
  assert.equal(contexts.status, 403)
  const allowed = await interpreterFetch(sandbox, '/execute', {
    method: 'POST', body, headers: { 'E2B-Traffic-Access-Token': sandbox.trafficAccessToken },
  })
  assert.equal(allowed.status, 200)
  const lines = (await allowed.text()).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
  assert.ok(lines.some((l) => l.type === 'result' && l.text === '42'), JSON.stringify(lines))
})

test('a sandbox from the warm pool gets its token at create too', async () => {
  // startDaemon points the SDK's environment at the new daemon: the first one's comes back.
  const env = ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY'].map((k) => [k, process.env[k]])
  const pooled = await startDaemon({ pools: ['base=1', 'code-interpreter-v1=0'] })
  for (const [key, value] of env) process.env[key] = value
  const url = new URL(pooled.url)
  try {
    const ready = async () => {
      const res = await fetch(`${pooled.url}/isobox/pools`, { headers: { 'X-API-KEY': pooled.apiKey } })
      return (await res.json()).base.ready === 1
    }
    const deadline = Date.now() + 30000
    while (!(await ready())) {
      if (Date.now() > deadline) throw new Error('the pool did not fill')
      await sleep(100)
    }
    const opts = { apiUrl: pooled.url, sandboxUrl: pooled.url, apiKey: pooled.apiKey }
    const sandbox = await Sandbox.create({ ...opts, network: { allowPublicTraffic: false } })
    try {
      assert.match(sandbox.trafficAccessToken ?? '', /^[A-Za-z0-9]{32}$/)
      const pools = await (await fetch(`${pooled.url}/isobox/pools`,
        { headers: { 'X-API-KEY': pooled.apiKey } })).json()
      assert.equal(pools.base.taken, 1, 'the sandbox came from the pool')
      // Refused before isoboxd even tries the (closed) port; with the token, the port's
      // own answer.
      const status = (headers) => new Promise((resolve, reject) => {
        http.get({ host: url.hostname, port: url.port, headers: routed(sandbox, 8080, headers) },
          (res) => { res.resume(); resolve(res.statusCode) }).on('error', reject)
      })
      assert.equal(await status({}), 403)
      assert.equal(await status({ [TOKEN_HEADER]: sandbox.trafficAccessToken }), 502)
    } finally {
      await sandbox.kill()
    }
  } finally {
    await pooled.stop()
  }
})

test('after kill -9 of isoboxd, a re-adopted sandbox still asks for its token', async () => {
  const env = ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY'].map((k) => [k, process.env[k]])
  let other = await startDaemon()
  try {
    const opts = { apiUrl: other.url, sandboxUrl: other.url, apiKey: other.apiKey }
    const sandbox = await Sandbox.create({ ...opts, network: { allowPublicTraffic: false } })
    const token = sandbox.trafficAccessToken
    await other.crash()
    other = await startDaemon({ dir: other.dir })
    const url = new URL(other.url)
    const status = (headers) => new Promise((resolve, reject) => {
      http.get({ host: url.hostname, port: url.port, headers: routed(sandbox, 8080, headers) },
        (res) => { res.resume(); resolve(res.statusCode) }).on('error', reject)
    })
    assert.equal(await status({}), 403)
    assert.equal(await status({ [TOKEN_HEADER]: token }), 502)
    const again = await Sandbox.connect(sandbox.sandboxId,
      { apiUrl: other.url, sandboxUrl: other.url, apiKey: other.apiKey })
    assert.equal(again.trafficAccessToken, token)
    assert.equal((await Sandbox.getInfo(sandbox.sandboxId,
      { apiUrl: other.url, apiKey: other.apiKey })).network.allowPublicTraffic, false)
  } finally {
    await other.stop()
    for (const [key, value] of env) process.env[key] = value
  }
})

test('--no-network: the ingress options need no network; the warm pool serves such creates', async () => {
  const env = ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY'].map((k) => [k, process.env[k]])
  const offline = await startDaemon({ args: ['--no-network'], pools: ['base=1', 'code-interpreter-v1=0'] })
  for (const [key, value] of env) process.env[key] = value
  const opts = { apiUrl: offline.url, sandboxUrl: offline.url, apiKey: offline.apiKey }
  try {
    const pools = async () => (await (await fetch(`${offline.url}/isobox/pools`,
      { headers: { 'X-API-KEY': offline.apiKey } })).json()).base
    const deadline = Date.now() + 30000
    while ((await pools()).ready !== 1) {
      if (Date.now() > deadline) throw new Error('the pool did not fill')
      await sleep(100)
    }
    // Not a synchronisation: the pooled sandbox's init must be measurably older than a
    // fresh one's would be when the create answers.
    await sleep(1000)
    const sandbox = await Sandbox.create({ ...opts, network: { allowPublicTraffic: false } })
    try {
      assert.ok(sandbox.trafficAccessToken)
      assert.equal((await pools()).taken, 1)
      const ticks = Number((await sandbox.commands.run('cut -d" " -f22 /proc/1/stat')).stdout)
      const uptime = Number((await sandbox.commands.run('cut -d" " -f1 /proc/uptime')).stdout)
      assert.ok(uptime - ticks / 100 >= 0.9, 'the sandbox is the pooled one, not a new one')
      const info = await Sandbox.getInfo(sandbox.sandboxId, opts)
      assert.equal(info.allowInternetAccess, false)
      assert.equal(info.network.allowPublicTraffic, false)
    } finally {
      await sandbox.kill()
    }
    await assert.rejects(Sandbox.create({ ...opts, allowInternetAccess: true }), /--no-network/)
    await assert.rejects(Sandbox.create({ ...opts, network: { denyOut: ['198.51.100.0/24'] } }),
      /--no-network/)
  } finally {
    await offline.stop()
  }
})
