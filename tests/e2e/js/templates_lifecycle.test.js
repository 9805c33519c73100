// Template builds against restarts: a kill -9 of isoboxd in the middle of a build leaves
// the build failed as interrupted, the name on its last ready build, no staging, no build
// sandbox; `isoboxd templates gc` collects what no template uses, and refuses to run
// beside a daemon.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox, Template } from 'e2b'
import { startDaemon } from './harness.js'

const ARGS = ['--no-network']
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function layerDirs(stateDir) {
  return readdirSync(join(stateDir, 'layers')).filter((name) => /^[0-9a-f]{64}$/.test(name))
}

test('kill -9 mid-build, restart: interrupted, nothing half-made, the name keeps its build', async () => {
  let daemon = await startDaemon({ args: ARGS, onExit: 'keep' })
  try {
    await Template.build(Template().fromTemplate('base').runCmd('echo one > /opt/gen', { user: 'root' }),
      'crashy')
    const started = await Template.buildInBackground(Template().fromTemplate('base')
      .runCmd('echo two > /opt/gen; echo running; sleep 120', { user: 'root' }), 'crashy')
    for (let i = 0; ; i++) {
      const status = await Template.getBuildStatus(started)
      if (status.logEntries.some((e) => e.message === 'running')) break
      assert.ok(i < 300, 'the RUN step never started')
      await sleep(100)
    }
    await daemon.crash()
    daemon = await startDaemon({ dir: daemon.dir, args: ARGS, onExit: 'kill' })
    const status = await Template.getBuildStatus(started)
    assert.equal(status.status, 'error')
    assert.match(status.reason.message, /interrupted/)
    assert.deepEqual(readdirSync(join(daemon.stateDir, 'layers', '.staging')), [])
    // The build sandbox, re-adopted, is gone too.
    const live = await Sandbox.list({ query: { state: ['running', 'paused'] } }).nextItems()
    assert.deepEqual(live.filter((s) => s.metadata?.['isobox.build']), [])
    const sandbox = await Sandbox.create('crashy')
    try {
      assert.equal((await sandbox.commands.run('cat /opt/gen')).stdout, 'one\n')
    } finally { await sandbox.kill() }
  } finally {
    await daemon.stop()
  }
})

test('templates gc: refuses beside a daemon; after a delete, removes what nothing uses', async () => {
  const daemon = await startDaemon({ args: ARGS, onExit: 'keep' })
  let stopped = false
  try {
    await Template.build(Template().fromTemplate('base').runCmd('echo kept > /opt/k', { user: 'root' }),
      'kept')
    await Template.build(Template().fromTemplate('base').runCmd('echo gone > /opt/g', { user: 'root' }),
      'gone')
    const before = layerDirs(daemon.stateDir)
    const beside = spawnSync(process.env.ISOBOXD, ['--state-dir', daemon.stateDir, 'templates', 'gc'],
      { encoding: 'utf8' })
    assert.equal(beside.status, 1)
    assert.match(beside.stderr, /another isoboxd uses the state directory/)
    // A delete collects at once in the daemon.
    await Template.build(Template().fromTemplate('base').runCmd('echo v2 > /opt/k', { user: 'root' }),
      'kept')
    const res = await fetch(`${daemon.url}/templates/gone`,
      { method: 'DELETE', headers: { 'X-API-KEY': daemon.apiKey } })
    assert.equal(res.status, 204)
    const after = layerDirs(daemon.stateDir)
    assert.ok(after.length < before.length + 1, `${before.length} -> ${after.length}`)
    await daemon.stop({ keepDir: true })
    stopped = true
    const out = execFileSync(process.env.ISOBOXD,
      ['--state-dir', daemon.stateDir, 'templates', 'gc'], { encoding: 'utf8' })
    assert.match(out, /removed \d+ layers; \d+ in use/)
    assert.ok(existsSync(join(daemon.stateDir, 'layers', 'ids')))
  } finally {
    if (!stopped) await daemon.stop()
    else rmSync(daemon.dir, { recursive: true, force: true })
  }
})
