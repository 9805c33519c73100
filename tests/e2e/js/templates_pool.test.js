// Warm pools of user-built templates (--pool NAME=N): the pool fills once a ready build of
// the name exists, with the start and ready commands already run; a create of that build
// takes a pooled sandbox (and does not run them again); a rebuild replaces the pooled
// sandboxes with the new build's; another key that cannot see the template never gets
// one; a delete empties the pool.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { Sandbox, Template } from 'e2b'
import { startDaemon, until } from './harness.js'

async function pools(daemon) {
  const res = await fetch(`${daemon.url}/isobox/pools`, { headers: { 'X-API-KEY': daemon.apiKey } })
  assert.equal(res.status, 200)
  return res.json()
}

function tenantKey(daemon, name) {
  const out = execFileSync(process.env.ISOBOXD,
    ['--state-dir', daemon.stateDir, 'api-key', 'create', '--name', name], { encoding: 'utf8' })
  return out.trim().split('\t')[1]
}

async function sh(sandbox, cmd) {
  return (await sandbox.commands.run(cmd)).stdout
}

// The start command leaves the time it ran; the ready command appends a line each time it
// runs and succeeds once the start command's file is there.
function versioned(version) {
  return Template()
    .fromTemplate('base')
    .runCmd(`echo ${version} > /home/user/version`)
    .setStartCmd('date +%s%N > /tmp/started-at',
      'test -s /tmp/started-at && date +%s%N >> /tmp/ready-log')
}

const nowNs = () => BigInt(Date.now()) * 1000000n

test('a user template pool: fills after the build, serves its creates, follows rebuilds, keeps tenancy, empties on delete', async () => {
  const daemon = await startDaemon({ pools: ['mytpl=2', 'base=0', 'code-interpreter-v1=0'], args: ['--no-network'] })
  try {
    // Unknown at start: the pool exists, empty, with nothing to fill with.
    assert.deepEqual((await pools(daemon)).mytpl,
      { ready: 0, target: 2, taken: 0, templateID: '', buildID: '' })
    const alice = tenantKey(daemon, 'alice')
    const bob = tenantKey(daemon, 'bob')

    const v1 = await Template.build(versioned('v1'), 'mytpl', { apiKey: alice })
    await until('the pool to fill with the build', async () => {
      const pool = (await pools(daemon)).mytpl
      return pool.ready === 2 && pool.buildID === v1.buildId
    }, 120000)
    assert.equal((await pools(daemon)).mytpl.templateID, v1.templateId)

    // Another key: the template is private, so it is not found, and the pool is untouched.
    await assert.rejects(Sandbox.create('mytpl', { apiKey: bob }), /not found/)
    assert.equal((await pools(daemon)).mytpl.taken, 0)
    assert.equal((await pools(daemon)).mytpl.ready, 2)

    const before = nowNs()
    const first = await Sandbox.create('mytpl', { apiKey: alice, metadata: { who: 'alice' } })
    try {
      assert.equal((await pools(daemon)).mytpl.taken, 1, 'the sandbox came from the pool')
      assert.equal(await sh(first, 'cat /home/user/version'), 'v1\n')
      // The ready command ran once, before this create began: it is not run again.
      const log = (await sh(first, 'cat /tmp/ready-log')).trim().split('\n')
      assert.equal(log.length, 1, log.join(','))
      assert.ok(BigInt(log[0]) < before, `ready at ${log[0]}, create at ${before}`)
      assert.ok(BigInt((await sh(first, 'cat /tmp/started-at')).trim()) <= BigInt(log[0]))
      const info = await first.getInfo()
      assert.deepEqual(info.metadata, { who: 'alice' })
      assert.ok(Date.now() - info.startedAt.getTime() < 10000, 'started when it was handed out')
      // Listed for alice, not for bob: the create's key owns it.
      assert.deepEqual((await Sandbox.list({ apiKey: alice }).nextItems()).map((s) => s.sandboxId),
        [first.sandboxId])
      assert.deepEqual(await Sandbox.list({ apiKey: bob }).nextItems(), [])
    } finally { await first.kill() }
    await until('the pool to refill', async () => (await pools(daemon)).mytpl.ready === 2, 120000)

    // A rebuild: no create gets the old build, pooled or not, and the pool refills with the new.
    const v2 = await Template.build(versioned('v2'), 'mytpl', { apiKey: alice })
    assert.notEqual(v2.buildId, v1.buildId)
    const right = await Sandbox.create('mytpl', { apiKey: alice })
    try {
      assert.equal(await sh(right, 'cat /home/user/version'), 'v2\n')
    } finally { await right.kill() }
    await until('the pool to refill with the new build', async () => {
      const pool = (await pools(daemon)).mytpl
      return pool.ready === 2 && pool.buildID === v2.buildId
    }, 120000)
    const taken = (await pools(daemon)).mytpl.taken
    const second = await Sandbox.create('mytpl', { apiKey: alice })
    try {
      assert.equal((await pools(daemon)).mytpl.taken, taken + 1, 'it came from the pool')
      assert.equal(await sh(second, 'cat /home/user/version'), 'v2\n')
      assert.equal((await sh(second, 'cat /tmp/ready-log')).trim().split('\n').length, 1)
    } finally { await second.kill() }
    await until('the pool to refill', async () => (await pools(daemon)).mytpl.ready === 2, 120000)

    // Bob still cannot reach it, pooled or not.
    await assert.rejects(Sandbox.create('mytpl', { apiKey: bob }), /not found/)

    // A delete empties the pool, and it stays empty.
    const del = await fetch(`${daemon.url}/templates/mytpl`,
      { method: 'DELETE', headers: { 'X-API-KEY': alice } })
    assert.equal(del.status, 204)
    await until('the pool to empty', async () => {
      const pool = (await pools(daemon)).mytpl
      return pool.ready === 0 && pool.buildID === ''
    }, 30000)
    await assert.rejects(Sandbox.create('mytpl', { apiKey: alice }), /not found/)
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.equal((await pools(daemon)).mytpl.ready, 0, 'nothing refilled it')
  } finally {
    await daemon.stop()
  }
})

test('a pool named name:tag fills with the build that tag names, and follows the tag', async () => {
  const daemon = await startDaemon({
    pools: ['tagged:stable=1', 'base=0', 'code-interpreter-v1=0'], args: ['--no-network'],
  })
  try {
    const v1 = await Template.build(versioned('v1'), 'tagged:stable')
    await until('the pool to fill', async () =>
      (await pools(daemon))['tagged:stable'].buildID === v1.buildId &&
      (await pools(daemon))['tagged:stable'].ready === 1, 120000)
    // Another build without the tag changes nothing for the pool.
    const v2 = await Template.build(versioned('v2'), 'tagged:next')
    assert.equal((await pools(daemon))['tagged:stable'].buildID, v1.buildId)
    // Moving the tag moves the pool.
    await Template.assignTags('tagged:next', ['stable'])
    await until('the pool to follow the tag', async () =>
      (await pools(daemon))['tagged:stable'].buildID === v2.buildId &&
      (await pools(daemon))['tagged:stable'].ready === 1, 120000)
    const sandbox = await Sandbox.create('tagged:stable')
    try {
      assert.equal((await pools(daemon))['tagged:stable'].taken, 1, 'it came from the pool')
      assert.equal(await sh(sandbox, 'cat /home/user/version'), 'v2\n')
    } finally { await sandbox.kill() }
  } finally {
    await daemon.stop()
  }
})

test('--pool refuses a name that is not a template name', async () => {
  await assert.rejects(startDaemon({ pools: ['Bad Name!=1'] }), /isoboxd exited/)
})
