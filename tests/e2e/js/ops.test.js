// Operations: /isobox/health, Prometheus metrics at /isobox/metrics and the audit log
// (<state>/audit.log and GET /isobox/audit), driven through the unmodified SDKs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Sandbox } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { startDaemon } from './harness.js'

let daemon
before(async () => { daemon = await startDaemon() })
after(async () => { await daemon?.stop() })

async function get(path, headers = {}) {
  const res = await fetch(daemon.url + path, { headers })
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() }
}

const withKey = () => ({ 'X-API-KEY': daemon.apiKey })

// The value of one sample in an exposition text; 0 when the series does not exist yet.
function sample(text, series) {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

async function metrics() {
  const res = await get('/isobox/metrics', withKey())
  assert.equal(res.status, 200)
  return res.body
}

async function audit(query) {
  const res = await get('/isobox/audit?' + new URLSearchParams(query), withKey())
  assert.equal(res.status, 200, res.body)
  return JSON.parse(res.body)
}

// Polls the audit log until `done(records)` holds.
async function auditUntil(query, done) {
  const deadline = Date.now() + 20000
  for (;;) {
    const records = await audit(query)
    if (done(records)) return records
    if (Date.now() > deadline) throw new Error('audit: ' + JSON.stringify(records))
    await sleep(100)
  }
}

test('health answers without an API key', async () => {
  const res = await get('/isobox/health')
  assert.equal(res.status, 200)
  assert.match(res.type, /^application\/json/)
  const health = JSON.parse(res.body)
  assert.equal(health.status, 'ok')
  assert.match(health.version, /^\d+\.\d+\.\d+$/)
  assert.ok(Number.isInteger(health.uptimeSeconds) && health.uptimeSeconds >= 0)
  assert.deepEqual(health.sandboxes, { running: 0, paused: 0 })
  const post = await fetch(daemon.url + '/isobox/health', { method: 'POST' })
  assert.equal(post.status, 405)
  assert.deepEqual(await post.json(),
    { code: 405, message: 'method POST is not allowed on /isobox/health' })
})

test('metrics need the API key (header or bearer) and are Prometheus text', async () => {
  const anonymous = await get('/isobox/metrics')
  assert.equal(anonymous.status, 401)
  assert.deepEqual(JSON.parse(anonymous.body),
    { code: 401, message: 'missing or invalid API key (X-API-KEY header)' })
  const bearer = await get('/isobox/metrics', { Authorization: `Bearer ${daemon.apiKey}` })
  assert.equal(bearer.status, 200)
  assert.equal(bearer.type, 'text/plain; version=0.0.4; charset=utf-8')
  for (const family of ['isobox_sandboxes gauge', 'isobox_sandbox_create_seconds histogram',
    'isobox_http_requests_total counter', 'isobox_sandbox_ended_total counter']) {
    assert.ok(bearer.body.includes(`# TYPE ${family}\n`), family)
  }
  const wrong = await get('/isobox/metrics', { Authorization: 'Bearer e2b_wrong' })
  assert.equal(wrong.status, 401)
})

test('counters move after a create, a relayed command and a kill', async () => {
  const before = await metrics()
  const sandbox = await Sandbox.create()
  const running = await metrics()
  assert.equal(sample(running, 'isobox_sandboxes{state="running"}'), 1)
  const health = JSON.parse((await get('/isobox/health')).body)
  assert.deepEqual(health.sandboxes, { running: 1, paused: 0 })
  assert.equal((await sandbox.commands.run('true')).exitCode, 0)
  await sandbox.kill()
  const afterKill = await metrics()
  const delta = (series) => sample(afterKill, series) - sample(before, series)
  assert.equal(delta('isobox_sandbox_create_seconds_count'), 1)
  assert.equal(delta('isobox_sandbox_create_seconds_bucket{le="+Inf"}'), 1)
  assert.ok(delta('isobox_sandbox_create_seconds_sum') > 0)
  assert.equal(delta('isobox_http_requests_total{route="/v2/sandboxes",code="201"}'), 1)
  assert.equal(delta('isobox_http_requests_total{route="/sandboxes/{id}",code="204"}'), 1)
  assert.ok(delta('isobox_http_requests_total{route="envd",code="200"}') >= 1)
  assert.equal(delta('isobox_sandbox_ended_total{reason="killed"}'), 1)
  assert.equal(sample(afterKill, 'isobox_sandboxes{state="running"}'), 0)
  // Raw paths never become label values.
  await get('/sandboxes/no-such-sandbox-here', withKey())
  assert.ok(!(await metrics()).includes('no-such-sandbox-here'))
})

test('the audit log records every act, never the code, command or output', async () => {
  const commandSecret = 'cmd-' + Math.random().toString(36).slice(2)
  const codeSecret = 'code-' + Math.random().toString(36).slice(2)
  const sandbox = await CodeSandbox.create()
  const id = sandbox.sandboxId
  const run = await sandbox.commands.run(`echo ${commandSecret}`, { user: 'root' })
  assert.equal(run.stdout.trim(), commandSecret)
  const code = `print("${codeSecret}")`
  const execution = await sandbox.runCode(code)
  assert.equal(execution.logs.stdout.join('').trim(), codeSecret)
  // The freezer pause, which Isobox names in its own header (the checkpoint of a code
  // interpreter's sandbox is checkpoint.test.js's).
  const paused = await fetch(`${daemon.url}/sandboxes/${id}/pause`, {
    method: 'POST', headers: { 'X-API-KEY': daemon.apiKey, 'Isobox-Pause-Mode': 'freeze' } })
  assert.equal(paused.status, 204)
  const resumed = await CodeSandbox.connect(id)
  await resumed.setTimeout(120000)
  await resumed.kill()

  const records = await auditUntil({ sandboxId: id },
    (r) => r.some((x) => x.action === 'sandbox.kill'))
  const actions = records.map((r) => r.action)
  const expected = ['sandbox.create', 'process.start', 'code.execute', 'sandbox.pause',
    'sandbox.connect', 'sandbox.timeout', 'sandbox.kill']
  let at = 0
  for (const action of actions) if (action === expected[at]) at++
  assert.equal(at, expected.length, `in order: ${expected} within ${actions}`)

  const keyId = 'key:' + createHash('sha256').update(daemon.apiKey).digest('hex').slice(0, 12)
  const byAction = (a) => records.find((r) => r.action === a)
  const create = byAction('sandbox.create')
  assert.equal(create.actor, keyId)
  assert.equal(create.status, 201)
  assert.equal(create.details.templateID, 'code-interpreter-v1')
  assert.match(create.remote, /^127\.0\.0\.1:\d+$/)
  assert.match(create.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  const start = byAction('process.start')
  assert.equal(start.actor, 'access-token')
  assert.equal(start.status, 200)
  assert.deepEqual(start.details, { user: 'root' })
  const exec = byAction('code.execute')
  assert.equal(exec.status, 200)
  assert.equal(exec.details.codeBytes, code.length)
  assert.equal(byAction('sandbox.connect').details.resumed, true)
  assert.equal(byAction('sandbox.timeout').details.timeout, 120)
  assert.equal(byAction('sandbox.kill').status, 204)

  const path = join(daemon.stateDir, 'audit.log')
  assert.equal(statSync(path).mode & 0o777, 0o600)
  const file = readFileSync(path, 'utf8')
  assert.ok(file.includes(id))
  assert.ok(!file.includes(commandSecret), 'the command line is not in the audit log')
  assert.ok(!file.includes(codeSecret), 'the code is not in the audit log')
  assert.ok(!file.includes(daemon.apiKey), 'the API key is not in the audit log')
  for (const line of file.trimEnd().split('\n')) JSON.parse(line)
})

test('a kill or pause at the end of the timeout is audited as the daemon\'s own', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 1000 })
  const records = await auditUntil({ sandboxId: sandbox.sandboxId },
    (r) => r.some((x) => x.action === 'sandbox.kill'))
  const kill = records.find((r) => r.action === 'sandbox.kill')
  assert.equal(kill.actor, 'isoboxd')
  assert.deepEqual(kill.details, { reason: 'timeout' })
  assert.equal(sample(await metrics(), 'isobox_sandbox_ended_total{reason="timeout"}'), 1)

  const pausing = await Sandbox.create({ timeoutMs: 1000, lifecycle: { onTimeout: 'pause' } })
  const paused = await auditUntil({ sandboxId: pausing.sandboxId },
    (r) => r.some((x) => x.action === 'sandbox.pause'))
  const pause = paused.find((r) => r.action === 'sandbox.pause')
  assert.equal(pause.actor, 'isoboxd')
  assert.deepEqual(pause.details, { reason: 'timeout' })
  await pausing.kill()
})

test('the audit query is validated and needs the API key', async () => {
  const anonymous = await get('/isobox/audit')
  assert.equal(anonymous.status, 401)
  const bad = await get('/isobox/audit?limit=0', withKey())
  assert.equal(bad.status, 400)
  assert.deepEqual(JSON.parse(bad.body),
    { code: 400, message: "'limit' must be an integer from 1 to 1000" })
  const unknown = await get('/isobox/audit?sandbox=x', withKey())
  assert.equal(unknown.status, 400)
  const limited = await audit({ limit: '1' })
  assert.equal(limited.length, 1)
  const future = await audit({ since: '2200-01-01T00:00:00Z' })
  assert.deepEqual(future, [])
  const far = await get('/isobox/audit?since=2999-01-01T00:00:00Z', withKey())
  assert.equal(far.status, 400)
})

test('--metrics-public opens the metrics; --no-audit turns the audit log off', async () => {
  const other = await startDaemon({ args: ['--metrics-public', '--no-audit'] })
  try {
    const res = await fetch(other.url + '/isobox/metrics')
    assert.equal(res.status, 200)
    assert.ok((await res.text()).includes('# TYPE isobox_sandboxes gauge\n'))
    const auditRes = await fetch(other.url + '/isobox/audit', { headers: { 'X-API-KEY': other.apiKey } })
    assert.equal(auditRes.status, 404)
    assert.deepEqual(await auditRes.json(), { code: 404, message: 'the audit log is off' })
    assert.equal(existsSync(join(other.stateDir, 'audit.log')), false)
  } finally {
    await other.stop()
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = daemon.url  // back to the first
  }
})
