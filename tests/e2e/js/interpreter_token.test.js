// The code interpreter (port 49999) runs code only for the holder of the sandbox's access
// token: isoboxd's relay refuses POST /execute without it (401, envd's JSON body, an audit
// record) before the sandbox sees the request, and the interpreter checks it again itself.
// The @e2b/code-interpreter SDK, which sends the token on /execute only, works as before.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Sandbox } from '@e2b/code-interpreter'
import { privateName, startDaemon } from './harness.js'

const UNAUTHORIZED = {
  code: 401,
  message: 'unauthorized access, please provide a valid access token or method signing if supported',
}

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  sandbox = await Sandbox.create()
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

// A request to port 49999 through isoboxd with exactly these extra headers.
function relayed(path, method, headers, body) {
  return fetch(`${daemon.url}${path}`, {
    method,
    headers: {
      'Content-Type': 'application/json',
      'E2b-Sandbox-Id': sandbox.sandboxId,
      'E2b-Sandbox-Port': '49999',
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
}

// One HTTP/1.1 request with node:http (for a Host header or a unix socket); the answer.
function rawRequest(options, body) {
  return new Promise((resolve, reject) => {
    const req = request(options, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function auditUntil(done) {
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

test('POST /execute without the token, or with a wrong one, is 401 and runs nothing', async () => {
  const marker = `/tmp/ran-${Math.random().toString(36).slice(2)}`
  const code = { code: `open(${JSON.stringify(marker)}, "w").close()` }
  const missing = await relayed('/execute', 'POST', {}, code)
  assert.equal(missing.status, 401)
  assert.match(missing.headers.get('content-type'), /^application\/json/)
  assert.deepEqual(await missing.json(), UNAUTHORIZED)
  const wrongToken = 'wrong-' + sandbox.envdAccessToken
  const wrong = await relayed('/execute', 'POST', { 'X-Access-Token': wrongToken }, code)
  assert.equal(wrong.status, 401)
  assert.deepEqual(await wrong.json(), UNAUTHORIZED)
  // Routed by Host "49999-<id>.<domain>" instead of the headers: the same check.
  const port = new URL(daemon.url).port
  const byHost = await rawRequest({
    host: '127.0.0.1', port, method: 'POST', path: '/execute',
    headers: { Host: `49999-${sandbox.sandboxId}.isobox.test`, 'Content-Type': 'application/json' },
  }, JSON.stringify(code))
  assert.equal(byHost.status, 401)
  assert.deepEqual(JSON.parse(byHost.text), UNAUTHORIZED)

  // The SDK sends the token: it runs code as before, and none of the refused code ran.
  const execution = await sandbox.runCode(`import os; os.path.exists(${JSON.stringify(marker)})`)
  assert.equal(execution.text, 'False')
  assert.equal((await sandbox.runCode('1 + 1')).text, '2')

  const records = await auditUntil(
    (r) => r.filter((x) => x.action === 'sandbox.unauthorized').length >= 3)
  const refused = records.filter((x) => x.action === 'sandbox.unauthorized')
  for (const record of refused) {
    assert.equal(record.status, 401)
    assert.equal(record.details.port, 49999)
    assert.equal(record.details.method, 'POST')
    assert.equal(record.details.path, '/execute')
  }
  assert.deepEqual(refused.map((r) => r.details.reason).sort(),
    ['missing access token', 'missing access token', 'wrong access token'])
  assert.deepEqual(refused.map((r) => r.actor).sort(), ['access-token', 'anonymous', 'anonymous'])
  // Only the accepted executions are code executions.
  assert.ok(records.filter((x) => x.action === 'code.execute').every((x) => x.status === 200))
  const file = readFileSync(join(daemon.stateDir, 'audit.log'), 'utf8')
  assert.ok(!file.includes(wrongToken), 'a presented token is never in the audit log')
  assert.ok(!file.includes(sandbox.envdAccessToken), 'the token is never in the audit log')
})

test('the context routes take no token, as the SDK calls them; a wrong one is refused', async () => {
  const context = await sandbox.createCodeContext({ language: 'python' })
  assert.equal((await sandbox.runCode('21 * 2', { context })).text, '42')
  assert.ok((await sandbox.listCodeContexts()).some((c) => c.id === context.id))
  await sandbox.restartCodeContext(context)
  const wrong = await relayed('/contexts', 'GET', { 'X-Access-Token': 'nope' })
  assert.equal(wrong.status, 401)
  assert.deepEqual(await wrong.json(), UNAUTHORIZED)
  const gone = await relayed(`/contexts/${context.id}`, 'DELETE', { 'X-Access-Token': 'nope' })
  assert.equal(gone.status, 401)
  assert.ok((await sandbox.listCodeContexts()).some((c) => c.id === context.id))
  await sandbox.removeCodeContext(context)
})

test('the interpreter checks the token itself, reached past isoboxd on its socket', async () => {
  const socketPath = join(daemon.stateDir, 'sandboxes', privateName(sandbox.sandboxId),
    'interpreter.sock')
  const body = JSON.stringify({ code: '6 * 7' })
  const post = (headers) => rawRequest({
    socketPath, method: 'POST', path: '/execute',
    headers: { 'Content-Type': 'application/json', ...headers },
  }, body)
  const missing = await post({})
  assert.equal(missing.status, 401)
  assert.deepEqual(JSON.parse(missing.text), UNAUTHORIZED)
  const wrong = await post({ 'X-Access-Token': 'nope' })
  assert.equal(wrong.status, 401)
  const right = await post({ 'X-Access-Token': sandbox.envdAccessToken })
  assert.equal(right.status, 200)
  const lines = right.text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
  assert.ok(lines.some((l) => l.type === 'result' && l.text === '42'), right.text)
})

test('code in a kernel cannot read the interpreter or hold its sockets', async () => {
  const probe = `
import json, os, re, socket
parent = os.getppid()
found = {}
for name in ('mem', 'environ'):
    try:
        open(f'/proc/{parent}/{name}', 'rb').close()
        found[name] = 'opened'
    except OSError as e:
        found[name] = e.errno
try:
    os.listdir(f'/proc/{parent}/fd')
    found['fd'] = 'listed'
except OSError as e:
    found['fd'] = e.errno
found['cmdline'] = open(f'/proc/{parent}/cmdline').read()
found['environ_self'] = open('/proc/self/environ').read()
held = []
for name in os.listdir('/proc/self/fd'):
    try:
        fd = os.dup(int(name))
    except OSError:
        continue
    try:
        s = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        continue
    with s:
        # The kernel's own ZeroMQ endpoints (ipc://<runtime dir>/kernel-<id>-<n>) listen
        # too: they are not what this looks for.
        own = s.family == socket.AF_UNIX and re.search(r'/kernel-[0-9a-f]+-[1-5]$', str(s.getsockname()))
        if s.family == socket.AF_UNIX and not own and (s.type == socket.SOCK_SEQPACKET or
                s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
            held.append(int(name))
found['held'] = held
print(json.dumps(found))
`
  const execution = await sandbox.runCode(probe)
  assert.equal(execution.error, undefined, JSON.stringify(execution.error))
  const found = JSON.parse(execution.logs.stdout.join(''))
  assert.equal(found.mem, 13, 'the interpreter\'s memory is not readable (EACCES)')
  assert.equal(found.environ, 13)
  assert.equal(found.fd, 13)
  assert.deepEqual(found.held, [], 'no listening or token socket reaches the kernel')
  assert.match(found.cmdline, /--token-fd/)
  assert.ok(!found.cmdline.includes(sandbox.envdAccessToken), 'the token is not in argv')
  assert.ok(!found.environ_self.includes(sandbox.envdAccessToken), 'nor in the environment')
})
