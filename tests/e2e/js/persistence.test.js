// State survives the daemon: kill -9 of isoboxd and a restart on the same state directory
// lose no running sandbox (processes, files, env vars, metadata, end time, timers), report
// the sandboxes that died meanwhile as ended with a reason, and a graceful stop with
// --on-exit keep hands the sandboxes to the next daemon too.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Sandbox, SandboxNotFoundError } from 'e2b'
import { agentPids, startDaemon, until } from './harness.js'

async function record(daemon, id) {
  const res = await fetch(`${daemon.url}/isobox/sandboxes/${id}`,
    { headers: { 'X-API-KEY': daemon.apiKey } })
  return { status: res.status, body: await res.json() }
}


test('kill -9 of isoboxd: a restart re-adopts running sandboxes and reports the lost ones', async () => {
  let daemon = await startDaemon()
  try {
    const kept = await Sandbox.create({ metadata: { role: 'kept' }, envs: { KEPT: 'yes' }, timeoutMs: 120000 })
    const lost = await Sandbox.create({ timeoutMs: 120000 })
    const expiring = await Sandbox.create({ timeoutMs: 3000 })
    const endAt = (await kept.getInfo()).endAt
    await kept.files.write('/home/user/note.txt', 'still here')
    const sleeper = await kept.commands.run('sleep 600', { background: true })

    await daemon.crash()
    // While no daemon runs: one sandbox dies, another one's end time passes.
    const pids = agentPids(lost.sandboxId)
    assert.ok(pids.length > 0, 'the agent of the sandbox to lose is found')
    for (const pid of pids) process.kill(pid, 'SIGKILL')
    await sleep(3500)

    daemon = await startDaemon({ dir: daemon.dir })
    const again = await Sandbox.connect(kept.sandboxId)
    assert.equal(await again.files.read('/home/user/note.txt'), 'still here')
    assert.equal((await again.commands.run('echo $KEPT')).stdout, 'yes\n')
    const listed = await again.commands.list()
    assert.ok(listed.some((p) => p.pid === sleeper.pid), 'the background command still runs')
    const handle = await again.commands.connect(sleeper.pid)
    assert.equal(await again.commands.kill(sleeper.pid), true)
    await assert.rejects(handle.wait())
    const info = await Sandbox.getInfo(kept.sandboxId)
    assert.deepEqual(info.metadata, { role: 'kept' })
    assert.ok(info.endAt.getTime() >= endAt.getTime(), 'the end time did not move earlier')

    // The lost sandbox: gone for E2B's API, ended with a reason for Isobox's.
    await assert.rejects(Sandbox.getInfo(lost.sandboxId), SandboxNotFoundError)
    const lostRecord = await record(daemon, lost.sandboxId)
    assert.equal(lostRecord.status, 200)
    assert.equal(lostRecord.body.state, 'ended')
    assert.equal(lostRecord.body.isobox.endReason, 'lost')

    // The one whose end passed while the daemon was down ends at once, as a timeout.
    await until('the expired sandbox to end', async () =>
      (await record(daemon, expiring.sandboxId)).body.state === 'ended')
    assert.equal((await record(daemon, expiring.sandboxId)).body.isobox.endReason, 'timeout')

    // Timers of re-adopted sandboxes still fire.
    await again.setTimeout(1000)
    await until('the re-adopted sandbox to time out', async () => !(await again.isRunning()), 5000)
    await until('its end to be recorded', async () =>
      (await record(daemon, kept.sandboxId)).body.state === 'ended')
    assert.equal((await record(daemon, kept.sandboxId)).body.isobox.endReason, 'timeout')
  } finally {
    await daemon.stop()
  }
})

test('a graceful stop with --on-exit keep hands sandboxes over; a kill is recorded', async () => {
  let daemon = await startDaemon({ onExit: 'keep' })
  try {
    const sandbox = await Sandbox.create({ timeoutMs: 120000 })
    await sandbox.files.write('/tmp/x', 'x')
    await daemon.stop({ keepDir: true })
    daemon = await startDaemon({ dir: daemon.dir })
    const again = await Sandbox.connect(sandbox.sandboxId)
    assert.equal(await again.files.read('/tmp/x'), 'x')
    // A re-adopted sandbox is not checkpointed (this isoboxd does not know its disk): a
    // pause with memory, a files-only pause and a snapshot answer 409 naming why; the
    // freezer pause works.
    const post = (path, init = {}) => fetch(`${daemon.url}${path}`, { method: 'POST', ...init,
      headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json', ...(init.headers ?? {}) } })
    const checkpoint = await post(`/sandboxes/${sandbox.sandboxId}/pause`)
    assert.equal(checkpoint.status, 409)
    assert.match((await checkpoint.json()).message, /running when isoboxd restarted.*Isobox-Pause-Mode: freeze/)
    assert.equal((await post(`/sandboxes/${sandbox.sandboxId}/pause`, { body: '{"memory":false}' })).status, 409)
    const snapshot = await post(`/sandboxes/${sandbox.sandboxId}/snapshots`, { body: '{}' })
    assert.equal(snapshot.status, 409)
    assert.match((await snapshot.json()).message, /running when isoboxd restarted/)
    assert.equal((await post(`/sandboxes/${sandbox.sandboxId}/pause`,
      { headers: { 'Isobox-Pause-Mode': 'freeze' } })).status, 204)
    const thawed = await Sandbox.connect(sandbox.sandboxId)
    assert.equal(await thawed.files.read('/tmp/x'), 'x')
    assert.equal(await again.kill(), true)
    const killed = await record(daemon, sandbox.sandboxId)
    assert.equal(killed.body.state, 'ended')
    assert.equal(killed.body.isobox.endReason, 'killed_by_user')
    assert.equal(killed.body.envdAccessToken, undefined)
    assert.equal((await record(daemon, 'nosuchsandbox')).status, 404)
  } finally {
    await daemon.stop()
  }
})

test('a sandbox whose agent dies is reported as ended with its status', async () => {
  const daemon = await startDaemon()
  try {
    const sandbox = await Sandbox.create({ timeoutMs: 120000 })
    for (const pid of agentPids(sandbox.sandboxId)) process.kill(pid, 'SIGKILL')
    await until('the sandbox to end', async () =>
      (await record(daemon, sandbox.sandboxId)).body.state === 'ended')
    const ended = (await record(daemon, sandbox.sandboxId)).body.isobox
    assert.equal(ended.endReason, 'signaled')
    assert.equal(ended.signal, 9)
  } finally {
    await daemon.stop()
  }
})

test('stored API keys: created and revoked with isoboxd api-key while the daemon runs', async () => {
  const daemon = await startDaemon()
  try {
    const cli = (...args) => execFileSync(process.env.ISOBOXD,
      ['--state-dir', join(daemon.dir, 'state'), 'api-key', ...args], { encoding: 'utf8' })
    const [id, key] = cli('create', '--name', 'e2e').trim().split('\t')
    assert.match(key, /^e2b_/)
    const list = (k) => fetch(`${daemon.url}/v2/sandboxes`, { headers: { 'X-API-KEY': k } })
    assert.equal((await list(key)).status, 200)
    assert.match(cli('list'), new RegExp(`^${id}\t.*\te2e$`, 'm'))
    assert.ok(!cli('list').includes(key), 'list never shows a key')
    cli('revoke', id)
    const refused = await list(key)
    assert.equal(refused.status, 401)
    assert.equal((await refused.json()).code, 401)
    // The run's own key (--api-key) is still accepted.
    assert.equal((await list(daemon.apiKey)).status, 200)
  } finally {
    await daemon.stop()
  }
})

test('options come from a TOML file given with --config; flags override it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-config-'))
  const config = join(dir, 'isoboxd.toml')
  writeFileSync(config, 'metrics-public = true\npool = ["base=3"]\nmax-sandboxes = 7\n')
  // The harness passes --pool base=0: the flag wins over the file.
  const daemon = await startDaemon({ args: ['--config', config] })
  try {
    const metrics = await fetch(`${daemon.url}/isobox/metrics`)
    assert.equal(metrics.status, 200, 'metrics-public from the file')
    const pools = await (await fetch(`${daemon.url}/isobox/pools`,
      { headers: { 'X-API-KEY': daemon.apiKey } })).json()
    assert.deepEqual(pools.base, { ready: 0, target: 0, taken: 0 })
  } finally {
    await daemon.stop()
  }
  writeFileSync(config, 'no-such-option = 1\n')
  await assert.rejects(startDaemon({ args: ['--config', config] }), /isoboxd exited/)
  rmSync(dir, { recursive: true, force: true })
})
