// The control plane as the unmodified `e2b` SDK uses it: create options, getInfo, list
// (filters, orders, paging), timeouts, connect, pause/resume, metrics, kill mid-command,
// and bad input answered with the right status and a JSON {code, message} body.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, TimeoutError } from 'e2b'
import { startDaemon, until } from './harness.js'

let daemon
before(async () => { daemon = await startDaemon() })
after(async () => { await daemon?.stop() })

async function listAll(opts) {
  const paginator = Sandbox.list(opts)
  const items = []
  while (paginator.hasNext) items.push(...await paginator.nextItems())
  return items
}

test('create with options, getInfo and list with filters, orders and paging', async () => {
  const run = `run-${Date.now()}`
  const created = []
  for (let i = 0; i < 3; i++) {
    created.push(await Sandbox.create({ metadata: { run, 'k 1': `v&=${i}` }, timeoutMs: 120000 }))
  }
  try {
    const info = await created[0].getInfo()
    assert.equal(info.sandboxId, created[0].sandboxId)
    assert.equal(info.templateId, 'base')
    assert.equal(info.state, 'running')
    assert.deepEqual(info.metadata, { run, 'k 1': 'v&=0' })
    const life = info.endAt.getTime() - info.startedAt.getTime()
    assert.ok(Math.abs(life - 120000) < 2000, `lifetime ${life}`)
    assert.ok(info.cpuCount > 0 && info.memoryMB > 0)

    const newestFirst = await listAll({ query: { metadata: { run } }, limit: 1 })
    assert.deepEqual(newestFirst.map((s) => s.sandboxId),
      created.map((s) => s.sandboxId).reverse())
    const oldestFirst = await listAll({ query: { metadata: { run } }, order: 'asc', limit: 2 })
    assert.deepEqual(oldestFirst.map((s) => s.sandboxId), created.map((s) => s.sandboxId))
    const one = await listAll({ query: { metadata: { run, 'k 1': 'v&=1' } } })
    assert.deepEqual(one.map((s) => s.sandboxId), [created[1].sandboxId])
    assert.equal((await listAll({ query: { metadata: { run }, template: 'nope' } })).length, 0)
    assert.equal((await listAll({ query: { metadata: { run }, state: ['paused'] } })).length, 0)
    const later = await listAll({ query: { metadata: { run }, startedAfter: new Date(Date.now() + 60000) } })
    assert.equal(later.length, 0)
  } finally {
    await Promise.all(created.map((s) => s.kill()))
  }
})

test('setTimeout shortens (dead within about a second of the new end) and extends', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 60000 })
  await sandbox.setTimeout(120000)
  const extended = await sandbox.getInfo()
  assert.ok(extended.endAt.getTime() - Date.now() > 110000)
  const shortenedAt = Date.now()
  await sandbox.setTimeout(2000)
  await until('the sandbox to end', async () => !(await sandbox.isRunning()), 8000)
  const endedAfter = Date.now() - shortenedAt
  assert.ok(endedAfter < 3500, `ended ${endedAfter} ms after a 2 s timeout`)
  assert.equal(await sandbox.kill(), false)
})

test('connect never shortens the end time and can extend it', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 120000 })
  try {
    const before = (await sandbox.getInfo()).endAt.getTime()
    const again = await Sandbox.connect(sandbox.sandboxId, { timeoutMs: 10000 })
    assert.equal((await again.getInfo()).endAt.getTime(), before)
    await Sandbox.connect(sandbox.sandboxId, { timeoutMs: 300000 })
    assert.ok((await sandbox.getInfo()).endAt.getTime() > before + 100000)
    assert.equal((await again.commands.run('echo same')).stdout, 'same\n')
  } finally {
    await sandbox.kill()
  }
})

test('pause and the freezer pause; connect resumes it with files, env and processes', async () => {
  const sandbox = await Sandbox.create({ envs: { ISOBOX_PAUSE: 'kept' } })
  try {
    await sandbox.files.write('before-pause.txt', 'still here')
    await sandbox.commands.run('sleep 600', { background: true })
    assert.equal(await sandbox.pause(), true)
    assert.equal(await sandbox.isRunning(), false)
    assert.equal(await sandbox.pause(), false)  // already paused: 409
    // Resume, then Isobox's fast pause (the cgroup freezer), which the answer names; the
    // SDK's pause above is a checkpoint (checkpoint.test.js).
    await Sandbox.connect(sandbox.sandboxId)
    const raw = await fetch(`${daemon.url}/sandboxes/${sandbox.sandboxId}/pause`, {
      method: 'POST',
      headers: { 'X-API-KEY': daemon.apiKey, 'Isobox-Pause-Mode': 'freeze' },
    })
    assert.equal(raw.status, 204)
    assert.equal(raw.headers.get('isobox-pause-mode'), 'freezer; memory kept')
    assert.equal((await sandbox.getInfo()).state, 'paused')
    const paused = await listAll({ query: { state: ['paused'] } })
    assert.ok(paused.some((s) => s.sandboxId === sandbox.sandboxId))

    const resumed = await Sandbox.connect(sandbox.sandboxId)
    assert.equal(await resumed.isRunning(), true)
    assert.equal(await resumed.files.read('before-pause.txt'), 'still here')
    assert.equal((await resumed.commands.run('echo $ISOBOX_PAUSE')).stdout, 'kept\n')
    assert.equal((await resumed.commands.run('pgrep -x sleep >/dev/null && echo alive')).stdout, 'alive\n')
  } finally {
    await sandbox.kill()
  }
})

test('metrics come from the sandbox cgroup and are filtered by time', async () => {
  const sandbox = await Sandbox.create()
  try {
    const metrics = await until('a metrics sample', async () => {
      const samples = await sandbox.getMetrics()
      return samples.length > 0 && samples
    })
    const sample = metrics[metrics.length - 1]
    assert.ok(sample.timestamp instanceof Date)
    assert.ok(sample.cpuCount > 0)
    assert.ok(sample.memUsed > 0 && sample.memTotal >= sample.memUsed)
    // The sandbox's own disk: as big as the template says, and not empty.
    assert.ok(sample.diskTotal > 512 * 1024 * 1024, `diskTotal ${sample.diskTotal}`)
    assert.ok(sample.diskUsed > 0 && sample.diskUsed < sample.diskTotal)
    assert.ok(sample.cpuUsedPct >= 0 && sample.cpuUsedPct <= 100)
    const old = await sandbox.getMetrics({ start: new Date(1e9), end: new Date(1e9 + 60000) })
    assert.deepEqual(old, [])
  } finally {
    await sandbox.kill()
  }
})

test('killing a sandbox during a command makes the SDK raise TimeoutError', async () => {
  const sandbox = await Sandbox.create()
  const running = sandbox.commands.run('sleep 30')
  await until('the command to start', async () =>
    (await sandbox.commands.list()).some((p) => p.args.includes('sleep 30')))
  // Watched before the kill: the stream may end before the kill call returns.
  const rejected = assert.rejects(running, (error) => error instanceof TimeoutError)
  await Sandbox.kill(sandbox.sandboxId)
  await rejected
})

test('bad input gets a JSON error with the right status', async () => {
  const call = async (method, path, body, headers = {}) => {
    const res = await fetch(daemon.url + path, {
      method, body, headers: { 'X-API-KEY': daemon.apiKey, ...headers },
    })
    const text = await res.text()
    return { status: res.status, json: text ? JSON.parse(text) : null }
  }
  const expectError = async (status, ...args) => {
    const res = await call(...args)
    assert.equal(res.status, status, `${args[0]} ${args[1]}: ${JSON.stringify(res.json)}`)
    assert.equal(res.json.code, status)
    assert.equal(typeof res.json.message, 'string')
    return res.json.message
  }
  assert.match(await expectError(400, 'POST', '/v2/sandboxes', '{"templateID":'), /invalid JSON/)
  assert.match(await expectError(400, 'POST', '/v2/sandboxes', '[]'), /JSON object/)
  assert.match(await expectError(400, 'POST', '/v2/sandboxes', '{"templateID":5}'), /templateID/)
  assert.match(await expectError(400, 'POST', '/v2/sandboxes',
    '{"templateID":"base","timeout":"soon"}'), /timeout/)
  assert.match(await expectError(400, 'POST', '/v2/sandboxes',
    '{"templateID":"base","metadata":{"a":1}}'), /metadata\.a/)
  assert.match(await expectError(404, 'POST', '/v2/sandboxes', '{"templateID":"nope"}'), /nope/)
  await expectError(413, 'POST', '/v2/sandboxes', 'x'.repeat(2 << 20))
  await expectError(404, 'GET', '/sandboxes/doesnotexist00000000')
  await expectError(404, 'POST', '/sandboxes/doesnotexist00000000/timeout', '{"timeout":5}')
  await expectError(404, 'POST', '/sandboxes/doesnotexist00000000/pause')
  await expectError(404, 'GET', '/sandboxes/doesnotexist00000000/metrics')
  assert.match(await expectError(400, 'GET', '/v2/sandboxes?nextToken=garbage'), /nextToken/)
  assert.match(await expectError(400, 'GET', '/v2/sandboxes?limit=0'), /limit/)
  assert.match(await expectError(400, 'GET', '/v2/sandboxes?state=sleeping'), /state/)
  assert.match(await expectError(400, 'GET', '/v2/sandboxes?startedAfter=yesterday'), /RFC 3339/)
  await expectError(404, 'GET', '/nothing/here')
  await expectError(405, 'PATCH', '/sandboxes/x')
  await expectError(401, 'GET', '/v2/sandboxes', undefined, { 'X-API-KEY': 'wrong' })
})
