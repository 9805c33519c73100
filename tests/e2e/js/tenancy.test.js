// Tenancy through the unmodified `e2b` SDK: a daemon started as an operator starts it (no
// key on the command line: the first start makes the admin key in <state>/api-keys) and
// two tenant keys made with `isoboxd api-key create`. Each key sees, connects to, pauses,
// kills and audits only its own sandboxes; a foreign sandbox answers as a missing one.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox, NotFoundError } from 'e2b'
import { startDaemon, until } from './harness.js'

let daemon
let admin  // the first start's key
let a      // { id, key } of two tenant keys
let b
const POOLS = ['base=1', 'code-interpreter-v1=0']

function cli(...args) {
  return execFileSync(process.env.ISOBOXD, ['--state-dir', daemon.stateDir, 'api-key', ...args],
    { encoding: 'utf8' })
}

function createKey(name, ...flags) {
  const [id, key] = cli('create', '--name', name, ...flags).trim().split('\t')
  return { id, key }
}

const keyId = (key) => createHash('sha256').update(key).digest('hex').slice(0, 12)

before(async () => {
  daemon = await startDaemon({ apiKey: null, onExit: 'keep', pools: POOLS })
  admin = readFileSync(join(daemon.stateDir, 'api-keys'), 'utf8').trim()
  a = createKey('team-a')
  b = createKey('team-b')
})
after(async () => {
  for (const info of await listAll(admin)) await Sandbox.kill(info.sandboxId, { apiKey: admin })
  await daemon?.stop()
})

async function listAll(apiKey) {
  const paginator = Sandbox.list({ apiKey, query: { state: ['running', 'paused'] } })
  const items = []
  while (paginator.hasNext) items.push(...await paginator.nextItems())
  return items
}

function call(apiKey, method, path, body) {
  const headers = { 'X-API-KEY': apiKey }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  return fetch(`${daemon.url}${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  })
}

async function audit(apiKey, query = {}) {
  const res = await fetch(`${daemon.url}/isobox/audit?` + new URLSearchParams({ limit: '1000', ...query }),
    { headers: { 'X-API-KEY': apiKey } })
  assert.equal(res.status, 200)
  return res.json()
}

test('the first start makes the admin key; api-key create makes tenant keys unless --admin', () => {
  const lines = cli('list').trim().split('\n').map((line) => line.split('\t'))
  const role = (id) => lines.find((fields) => fields[0] === id)?.[2]
  assert.equal(role(keyId(admin)), 'admin')
  assert.equal(lines.find((fields) => fields[0] === keyId(admin))[3], 'first start')
  assert.equal(role(a.id), 'tenant')
  assert.equal(role(b.id), 'tenant')
  const ops = createKey('ops', '--admin')
  const again = () => cli('list').trim().split('\n').map((line) => line.split('\t'))
    .find((fields) => fields[0] === ops.id)?.[2]
  assert.equal(again(), 'admin')
  cli('demote', ops.id)
  assert.equal(again(), 'tenant')
  cli('promote', ops.id)
  assert.equal(again(), 'admin')
  cli('revoke', ops.id)
  assert.equal(again(), undefined)
})

test('a foreign sandbox answers every route exactly as a missing one', async () => {
  const mine = await Sandbox.create({ apiKey: a.key, timeoutMs: 120000 })
  try {
    const endAt = (await Sandbox.getInfo(mine.sandboxId, { apiKey: a.key })).endAt.getTime()
    const missing = 'nosuchsandbox0000000'
    const routes = [
      ['GET', '/sandboxes/{id}'],
      ['GET', '/v2/sandboxes/{id}'],
      ['POST', '/sandboxes/{id}/pause', {}],
      ['POST', '/sandboxes/{id}/resume', {}],
      ['POST', '/sandboxes/{id}/connect', { timeout: 10 }],
      ['POST', '/v2/sandboxes/{id}/connect', { timeout: 10 }],
      ['POST', '/sandboxes/{id}/timeout', { timeout: 5 }],
      ['POST', '/sandboxes/{id}/timeout', {}],
      ['POST', '/sandboxes/{id}/refreshes', { duration: 5 }],
      ['GET', '/sandboxes/{id}/metrics'],
      ['GET', '/isobox/sandboxes/{id}'],
      ['DELETE', '/sandboxes/{id}'],
    ]
    for (const [method, path, body] of routes) {
      const foreign = await call(b.key, method, path.replace('{id}', mine.sandboxId), body)
      const unknown = await call(b.key, method, path.replace('{id}', missing), body)
      const what = `${method} ${path} ${JSON.stringify(body)}`
      assert.equal(foreign.status, unknown.status, what)
      assert.equal((await foreign.text()).replaceAll(mine.sandboxId, 'ID'),
        (await unknown.text()).replaceAll(missing, 'ID'), what)
      if (!path.endsWith('/timeout') || body.timeout) assert.equal(foreign.status, 404, what)
    }

    // The same through the SDK.
    const asB = { apiKey: b.key }
    await assert.rejects(Sandbox.getInfo(mine.sandboxId, asB), NotFoundError)
    await assert.rejects(Sandbox.connect(mine.sandboxId, asB), NotFoundError)
    await assert.rejects(Sandbox.setTimeout(mine.sandboxId, 5000, asB), NotFoundError)
    await assert.rejects(Sandbox.pause(mine.sandboxId, asB), NotFoundError)
    await assert.rejects(Sandbox.getMetrics(mine.sandboxId, asB), NotFoundError)
    assert.equal(await Sandbox.kill(mine.sandboxId, asB), false)
    assert.ok(!(await listAll(b.key)).some((s) => s.sandboxId === mine.sandboxId))

    // Untouched by all of that: running, same end, and it answers.
    const info = await Sandbox.getInfo(mine.sandboxId, { apiKey: a.key })
    assert.equal(info.state, 'running')
    assert.equal(info.endAt.getTime(), endAt)
    assert.equal((await mine.commands.run('echo still')).stdout, 'still\n')
    assert.ok((await listAll(a.key)).some((s) => s.sandboxId === mine.sandboxId))

    // An admin key sees and acts on it.
    assert.ok((await listAll(admin)).some((s) => s.sandboxId === mine.sandboxId))
    assert.equal((await Sandbox.getInfo(mine.sandboxId, { apiKey: admin })).sandboxId,
      mine.sandboxId)
    await Sandbox.setTimeout(mine.sandboxId, 100000, { apiKey: admin })
    assert.equal(await Sandbox.kill(mine.sandboxId, { apiKey: a.key }), true)
  } finally {
    await Sandbox.kill(mine.sandboxId, { apiKey: admin })
  }
})

test('the audit log shows a key the records of its sandboxes and its own requests only', async () => {
  const ofA = await Sandbox.create({ apiKey: a.key })
  const ofB = await Sandbox.create({ apiKey: b.key })
  try {
    await ofA.commands.run('true')  // process.start, by the sandbox's access token
    assert.equal(await Sandbox.kill(ofA.sandboxId, { apiKey: b.key }), false)
    const seenByB = await audit(b.key)
    for (const record of seenByB) {
      assert.ok(record.actor === `key:${b.id}` || record.sandboxId === ofB.sandboxId,
        `B reads ${JSON.stringify(record)}`)
    }
    assert.ok(seenByB.some((r) => r.action === 'sandbox.create' && r.sandboxId === ofB.sandboxId))
    // B's kill of A's sandbox was answered 404, as for an unknown id, and like every
    // request answered 404 it is not audited (floods): nothing of A's sandbox for B.
    assert.deepEqual(seenByB.filter((r) => r.sandboxId === ofA.sandboxId)
      .map((r) => [r.actor, r.action, r.status]), [])
    assert.deepEqual(await audit(b.key, { sandboxId: ofA.sandboxId }),
      seenByB.filter((r) => r.sandboxId === ofA.sandboxId))

    const seenByA = await audit(a.key, { sandboxId: ofA.sandboxId })
    assert.deepEqual(seenByA.map((r) => `${r.actor} ${r.action}`).sort(), [
      'access-token process.start',
      `key:${a.id} sandbox.create`,
    ].sort())
    assert.deepEqual(await audit(a.key, { sandboxId: ofB.sandboxId }), [])
    const all = await audit(admin)
    assert.ok(all.some((r) => r.sandboxId === ofA.sandboxId))
    assert.ok(all.some((r) => r.sandboxId === ofB.sandboxId))
  } finally {
    await Sandbox.kill(ofA.sandboxId, { apiKey: a.key })
    await Sandbox.kill(ofB.sandboxId, { apiKey: b.key })
  }
})

test('pools and metrics are for admin keys; health needs no key', async () => {
  for (const path of ['/isobox/pools', '/isobox/metrics']) {
    const refused = await call(b.key, 'GET', path)
    assert.equal(refused.status, 403, path)
    assert.equal((await refused.json()).code, 403)
    const bearer = await fetch(`${daemon.url}${path}`, { headers: { Authorization: `Bearer ${b.key}` } })
    assert.equal(bearer.status, 403, path)
    assert.equal((await call(admin, 'GET', path)).status, 200, path)
  }
  assert.equal((await fetch(`${daemon.url}/isobox/health`)).status, 200)
})

test('a pooled sandbox belongs to the key whose create took it', async () => {
  const pools = async () => (await call(admin, 'GET', '/isobox/pools')).json()
  await until('the base pool to fill', async () => (await pools()).base.ready === 1, 30000)
  const taken = (await pools()).base.taken
  const sandbox = await Sandbox.create({ apiKey: a.key })
  try {
    assert.equal((await pools()).base.taken, taken + 1, 'served from the pool')
    await assert.rejects(Sandbox.getInfo(sandbox.sandboxId, { apiKey: b.key }), NotFoundError)
    assert.equal((await Sandbox.getInfo(sandbox.sandboxId, { apiKey: a.key })).state, 'running')
  } finally {
    await Sandbox.kill(sandbox.sandboxId, { apiKey: a.key })
  }
})

test('snapshots belong to their key: another key cannot list, use, fork, snapshot or delete them', async () => {
  const sandbox = await Sandbox.create({ apiKey: a.key, timeoutMs: 120000 })
  try {
    const snapshot = await Sandbox.createSnapshot(sandbox.sandboxId, { apiKey: a.key, name: 'a-only' })
    const listed = async (key) => (await Sandbox.listSnapshots({ apiKey: key }).nextItems())
      .map((s) => s.snapshotId)
    assert.deepEqual(await listed(a.key), ['a-only:default'])
    assert.deepEqual(await listed(b.key), [])
    assert.ok((await listed(admin)).includes('a-only:default'))
    // Another key's snapshot is an unknown template to b: nothing starts from it.
    await assert.rejects(Sandbox.create(snapshot.snapshotId, { apiKey: b.key }), /not found/i)
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId, { apiKey: b.key }), false)
    // b may not snapshot or fork a's sandbox either.
    await assert.rejects(Sandbox.createSnapshot(sandbox.sandboxId, { apiKey: b.key }), NotFoundError)
    await assert.rejects(Sandbox.fork(sandbox.sandboxId, { apiKey: b.key, count: 1 }), NotFoundError)
    // b's own snapshot may take the same name: names are per key.
    const other = await Sandbox.create({ apiKey: b.key, timeoutMs: 120000 })
    try {
      const own = await Sandbox.createSnapshot(other.sandboxId, { apiKey: b.key, name: 'a-only' })
      assert.equal(own.snapshotId, 'a-only:default')
      const clone = await Sandbox.create(own.snapshotId, { apiKey: b.key, timeoutMs: 60000 })
      assert.equal((await Sandbox.getInfo(clone.sandboxId, { apiKey: b.key })).state, 'running')
      await assert.rejects(Sandbox.getInfo(clone.sandboxId, { apiKey: a.key }), NotFoundError)
      await Sandbox.kill(clone.sandboxId, { apiKey: b.key })
      assert.equal(await Sandbox.deleteSnapshot(own.snapshotId, { apiKey: b.key }), true)
    } finally {
      await Sandbox.kill(other.sandboxId, { apiKey: b.key })
    }
    assert.deepEqual(await listed(a.key), ['a-only:default'])
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId, { apiKey: a.key }), true)
  } finally {
    await Sandbox.kill(sandbox.sandboxId, { apiKey: a.key })
  }
})

// Last: it replaces the daemon.
test('ownership survives a restart, and stays with the record once the sandbox ended', async () => {
  const sandbox = await Sandbox.create({ apiKey: a.key, timeoutMs: 120000 })
  await daemon.stop({ keepDir: true })  // --on-exit keep: the next daemon re-adopts it
  daemon = await startDaemon({ dir: daemon.dir, apiKey: null, pools: POOLS })
  const record = (key) => call(key, 'GET', `/isobox/sandboxes/${sandbox.sandboxId}`)
  await assert.rejects(Sandbox.getInfo(sandbox.sandboxId, { apiKey: b.key }), NotFoundError)
  assert.ok(!(await listAll(b.key)).some((s) => s.sandboxId === sandbox.sandboxId))
  assert.equal((await Sandbox.getInfo(sandbox.sandboxId, { apiKey: a.key })).state, 'running')
  assert.equal(await Sandbox.kill(sandbox.sandboxId, { apiKey: b.key }), false)
  assert.equal(await Sandbox.kill(sandbox.sandboxId, { apiKey: a.key }), true)
  assert.equal((await record(b.key)).status, 404)
  const ended = await record(a.key)
  assert.equal(ended.status, 200)
  assert.equal((await ended.json()).state, 'ended')
  assert.equal((await record(admin)).status, 200)
})
