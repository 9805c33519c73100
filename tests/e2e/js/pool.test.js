// Warm pools: sandboxes started ahead of time are handed out by create with the caller's
// settings, and the pool refills itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { startDaemon, until } from './harness.js'

async function pools(daemon) {
  const res = await fetch(`${daemon.url}/isobox/pools`, { headers: { 'X-API-KEY': daemon.apiKey } })
  assert.equal(res.status, 200)
  return res.json()
}

test('base pool: create takes a ready sandbox, applies its settings, and the pool refills', async () => {
  const daemon = await startDaemon({ pools: ['base=2', 'code-interpreter-v1=0'] })
  try {
    await until('the pool to fill', async () => (await pools(daemon)).base.ready === 2, 60000)
    assert.deepEqual((await pools(daemon))['code-interpreter-v1'], { ready: 0, target: 0, taken: 0 })
    assert.equal((await pools(daemon)).base.taken, 0)
    const sandbox = await Sandbox.create({ metadata: { from: 'pool' }, timeoutMs: 60000 })
    assert.equal((await pools(daemon)).base.taken, 1, 'the sandbox came from the pool')
    const info = await sandbox.getInfo()
    assert.deepEqual(info.metadata, { from: 'pool' })
    const life = info.endAt.getTime() - info.startedAt.getTime()
    assert.ok(Math.abs(life - 60000) < 2000, `lifetime ${life}`)
    assert.ok(Date.now() - info.startedAt.getTime() < 10000, 'started when it was handed out')
    assert.equal((await sandbox.commands.run('whoami')).stdout, 'user\n')
    // Env vars given at create reach a pooled sandbox through its agent's /init.
    await until('the pool to refill', async () => (await pools(daemon)).base.ready === 2, 60000)
    const withEnv = await Sandbox.create({ envs: { POOLED: 'yes' } })
    assert.equal((await pools(daemon)).base.taken, 2, 'the sandbox with env vars came from the pool')
    assert.equal((await withEnv.commands.run('echo $POOLED')).stdout, 'yes\n')
    await withEnv.kill()
    const listed = await Sandbox.list().nextItems()
    assert.deepEqual(listed.map((s) => s.sandboxId), [sandbox.sandboxId], 'pooled ones are not listed')
    await until('the pool to refill', async () => (await pools(daemon)).base.ready === 2, 60000)
    await sandbox.kill()
  } finally {
    await daemon.stop()
  }
})

test('code interpreter pool: the first runCode answers from ready kernels', async () => {
  const daemon = await startDaemon({ pools: ['base=0', 'code-interpreter-v1=1'] })
  try {
    await until('the pool to fill', async () =>
      (await pools(daemon))['code-interpreter-v1'].ready === 1, 120000)
    const sandbox = await CodeSandbox.create({ timeoutMs: 60000 })
    assert.equal((await pools(daemon))['code-interpreter-v1'].taken, 1, 'it came from the pool')
    const execution = await sandbox.runCode('1+1')
    assert.equal(execution.text, '2')
    await sandbox.kill()
    // Env vars cannot reach kernels that already run: such a create starts a new sandbox,
    // whose kernels see them.
    await until('the pool to refill', async () =>
      (await pools(daemon))['code-interpreter-v1'].ready === 1, 120000)
    const withEnv = await CodeSandbox.create({ envs: { KERNEL_ENV: 'seen' } })
    assert.equal((await pools(daemon))['code-interpreter-v1'].taken, 1, 'the pooled one stayed')
    assert.equal((await withEnv.runCode('import os; os.environ["KERNEL_ENV"]')).text, 'seen')
    await withEnv.kill()
  } finally {
    await daemon.stop()
  }
})

test('a pool whose fill failed refills by itself once the cause is gone', async () => {
  // Two sandboxes at most: the pooled one counts, so with two handed out the refill fails
  // at the limit; killing one must let the pool fill again without another create.
  const daemon = await startDaemon({ pools: ['base=1', 'code-interpreter-v1=0'], args: ['--max-sandboxes', '2'] })
  try {
    await until('the pool to fill', async () => (await pools(daemon)).base.ready === 1, 60000)
    const first = await Sandbox.create()
    await until('the pool to refill', async () => (await pools(daemon)).base.ready === 1, 60000)
    const second = await Sandbox.create()
    assert.equal((await pools(daemon)).base.taken, 2, 'both came from the pool')
    // Its refill meets the limit now: two sandboxes run.
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal((await pools(daemon)).base.ready, 0)
    await first.kill()
    await until('the pool to refill after its failed fill', async () =>
      (await pools(daemon)).base.ready === 1, 15000)
    assert.equal((await pools(daemon)).base.taken, 2, 'no create took part')
    await second.kill()
  } finally {
    await daemon.stop()
  }
})

test('--pool rejects a malformed size', async () => {
  await assert.rejects(startDaemon({ pools: ['base=lots'] }), /isoboxd exited/)
})
