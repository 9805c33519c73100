// Paused sandboxes whose processes ended (issue 21): E2B's keepMemory: false keeps the
// files only and a resume starts the sandbox again; both kinds of pause survive an
// isoboxd restart and a kill -9 (their disks and checkpoints are files, their records in
// the database); the lifecycle options of a create are honoured or refused, never dropped;
// a pause that does not fit on the host's disk is refused and the sandbox keeps running.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox } from 'e2b'
import { startDaemon, privateName } from './harness.js'

let daemon
before(async () => { daemon = await startDaemon() })
after(async () => { await daemon?.stop() })

function pause(d, id, body = undefined, headers = {}) {
  return fetch(`${d.url}/sandboxes/${id}/pause`, {
    method: 'POST',
    headers: { 'X-API-KEY': d.apiKey, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
}

function create(d, body) {
  return fetch(`${d.url}/sandboxes`, {
    method: 'POST',
    headers: { 'X-API-KEY': d.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })
}

test('keepMemory: false keeps the files, ends the processes; connect starts the sandbox again', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 600000, envs: { CREATED_WITH: 'env-1' } })
  try {
    await sandbox.files.write('/home/user/notes.txt', 'kept on disk')
    await sandbox.commands.run('sudo sh -c "echo root-edit > /etc/kept-by-root"')
    await sandbox.commands.run('nohup sleep 100000 >/dev/null 2>&1 &')
    assert.match((await sandbox.commands.run('pgrep -x sleep || true')).stdout, /\d+/)

    const raw = await pause(daemon, sandbox.sandboxId, { memory: false })
    assert.equal(raw.status, 204, await raw.text())
    assert.equal(raw.headers.get('isobox-pause-mode'), 'files; processes ended')
    assert.equal((await sandbox.getInfo()).state, 'paused')
    const dir = join(daemon.stateDir, 'checkpoints', privateName(sandbox.sandboxId))
    assert.deepEqual(readdirSync(dir).sort(), ['disk.img', 'sandbox.json'])
    assert.equal(statSync(dir).mode & 0o777, 0o700)
    assert.equal(statSync(join(dir, 'disk.img')).mode & 0o777, 0o600)
    // Pausing it again is a conflict, as for any paused sandbox.
    assert.equal((await pause(daemon, sandbox.sandboxId, { memory: false })).status, 409)

    const resumed = await Sandbox.connect(sandbox.sandboxId)
    assert.equal((await resumed.getInfo()).state, 'running')
    assert.equal(await resumed.files.read('/home/user/notes.txt'), 'kept on disk')
    assert.equal((await resumed.commands.run('cat /etc/kept-by-root')).stdout, 'root-edit\n')
    // Its processes ended with the pause; the new agent has the create's env vars.
    assert.equal((await resumed.commands.run('pgrep -x sleep || echo none')).stdout, 'none\n')
    assert.equal((await resumed.commands.run('echo $CREATED_WITH')).stdout, 'env-1\n')
    assert.equal(existsSync(dir), false)
    // And it pauses and resumes again, with memory this time.
    await resumed.commands.run('nohup sleep 100001 >/dev/null 2>&1 &')
    assert.equal((await pause(daemon, sandbox.sandboxId)).status, 204)
    const again = await Sandbox.connect(sandbox.sandboxId)
    assert.match((await again.commands.run('pgrep -f "sleep 100001"')).stdout, /\d+/)
  } finally {
    await sandbox.kill()
  }
})

test('both kinds of pause survive an isoboxd restart and a kill -9', async () => {
  const first = await startDaemon({ onExit: 'keep' })
  let second, third
  try {
    const env = { apiUrl: first.url, apiKey: first.apiKey }
    const memory = await Sandbox.create({ ...env, timeoutMs: 600000 })
    const files = await Sandbox.create({ ...env, timeoutMs: 600000 })
    await memory.files.write('/home/user/m.txt', 'memory sandbox')
    await files.files.write('/home/user/f.txt', 'files sandbox')
    await memory.commands.run(
      'nohup sh -c \'i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/counter; ' +
      'sleep 0.05; done\' >/dev/null 2>&1 &')
    await new Promise((r) => setTimeout(r, 500))
    const counterBefore = Number((await memory.commands.run('cat /tmp/counter')).stdout)
    const addressBefore = (await memory.commands.run('hostname -I')).stdout.trim()
    assert.equal((await pause(first, memory.sandboxId)).status, 204)
    assert.equal((await pause(first, files.sandboxId, { memory: false })).status, 204)
    await first.stop({ keepDir: true })

    // A restart: both are paused, with their ids and end times.
    second = await startDaemon({ dir: first.dir, onExit: 'keep' })
    const env2 = { apiUrl: second.url, apiKey: second.apiKey }
    const listed = await Sandbox.list({ ...env2, query: { state: ['paused'] } }).nextItems()
    assert.deepEqual(listed.map((s) => s.sandboxId).sort(), [memory.sandboxId, files.sandboxId].sort())
    // A kill -9 of that daemon while they are paused, then a third start.
    await second.crash()
    third = await startDaemon({ dir: first.dir })
    const env3 = { apiUrl: third.url, apiKey: third.apiKey }

    const m = await Sandbox.connect(memory.sandboxId, env3)
    const counterAfter = Number((await m.commands.run('cat /tmp/counter')).stdout)
    assert.ok(counterAfter >= counterBefore, `${counterAfter} after ${counterBefore}`)
    await new Promise((r) => setTimeout(r, 300))
    assert.ok(Number((await m.commands.run('cat /tmp/counter')).stdout) > counterAfter,
      'the counter process runs on')
    assert.equal(await m.files.read('/home/user/m.txt'), 'memory sandbox')
    assert.equal((await m.commands.run('hostname -I')).stdout.trim(), addressBefore)

    const f = await Sandbox.connect(files.sandboxId, env3)
    assert.equal(await f.files.read('/home/user/f.txt'), 'files sandbox')
    assert.equal((await f.commands.run('echo ok')).stdout, 'ok\n')
    await m.kill()
    await f.kill()
    assert.deepEqual(readdirSync(join(third.stateDir, 'checkpoints')), [])
  } finally {
    if (third) await third.stop()
    else if (second) await second.stop()
    else await first.stop()
    // The SDK's default daemon is this file's again (startDaemon sets E2B_API_URL).
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = daemon.url
    process.env.E2B_VOLUME_API_URL = daemon.url
    process.env.E2B_API_KEY = daemon.apiKey
  }
})

test('a killed paused sandbox leaves nothing: its disk and park record go', async () => {
  const sandbox = await Sandbox.create()
  const dir = join(daemon.stateDir, 'checkpoints', privateName(sandbox.sandboxId))
  assert.equal((await pause(daemon, sandbox.sandboxId, { memory: false })).status, 204)
  assert.equal(existsSync(join(dir, 'disk.img')), true)
  await Sandbox.kill(sandbox.sandboxId)
  assert.equal(existsSync(dir), false)
})

test('lifecycle options are honoured or refused, never dropped', async () => {
  // keepMemory: false at the timeout: a files-only pause.
  const sandbox = await Sandbox.create({
    timeoutMs: 2000, lifecycle: { onTimeout: { action: 'pause', keepMemory: false } } })
  try {
    await sandbox.files.write('/home/user/at-timeout.txt', 'still here')
    const deadline = Date.now() + 20000
    while ((await sandbox.getInfo()).state !== 'paused' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200))
    }
    assert.equal((await sandbox.getInfo()).state, 'paused')
    const dir = join(daemon.stateDir, 'checkpoints', privateName(sandbox.sandboxId))
    assert.deepEqual(readdirSync(dir).sort(), ['disk.img', 'sandbox.json'])
    const resumed = await Sandbox.connect(sandbox.sandboxId, { timeoutMs: 60000 })
    assert.equal(await resumed.files.read('/home/user/at-timeout.txt'), 'still here')
  } finally {
    await sandbox.kill()
  }

  const withResume = await Sandbox.create({ lifecycle: { onTimeout: 'pause', autoResume: true } })
  try {
    const info = await withResume.getInfo()
    assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: true })
  } finally {
    await withResume.kill()
  }

  const refused = [
    [{ templateID: 'base', autoPauseMemory: false }, /only allowed with 'autoPause': true/],
    [{ templateID: 'base', autoResume: { enabled: true } }, /only be enabled with 'autoPause'/],
    [{ templateID: 'base', autoPause: true, autoPauseMemory: false, autoResume: { enabled: true } },
      /files-only pause is resumed explicitly/],
    [{ templateID: 'base', autoPause: true, autoResume: { enabled: 'yes' } }, /must be a boolean/],
    [{ templateID: 'base', autoPause: true, autoResume: { on: true } }, /unknown field 'on'/],
    [{ templateID: 'base', cpuCount: 4 }, /unknown field 'cpuCount'/],
  ]
  for (const [body, message] of refused) {
    const res = await create(daemon, body)
    assert.equal(res.status, 400, JSON.stringify(body))
    assert.match((await res.json()).message, message)
  }
  const iam = await create(daemon, { templateID: 'base', iam: { tokens: {} } })
  assert.equal(iam.status, 501)
  assert.match((await iam.json()).message, /'iam' is not supported/)
  // secure: true asks for what every sandbox has.
  const secure = await create(daemon, { templateID: 'base', secure: true })
  assert.equal(secure.status, 201)
  await Sandbox.kill((await secure.json()).sandboxID)

  // A pause body that asks for two things at once.
  const both = await Sandbox.create()
  try {
    const res = await pause(daemon, both.sandboxId, { memory: false }, { 'Isobox-Pause-Mode': 'freeze' })
    assert.equal(res.status, 400)
    assert.match((await res.json()).message, /ask for one of the two/)
    assert.equal((await both.getInfo()).state, 'running')
  } finally {
    await both.kill()
  }
})

test('autoResume: the first request that may reach a paused sandbox resumes it', async () => {
  const sandbox = await Sandbox.create({
    timeoutMs: 600000, lifecycle: { onTimeout: 'pause', autoResume: true } })
  const plain = await Sandbox.create({ timeoutMs: 600000 })
  try {
    await sandbox.commands.run(
      'nohup python3 -m http.server 8123 --directory /home/user >/dev/null 2>&1 &')
    await sandbox.files.write('/home/user/page.txt', 'served')
    const url = `${daemon.url}/page.txt`
    const viaPort = (headers = {}) =>
      fetch(url, { headers: { 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': '8123', ...headers } })
    for (let i = 0; i < 50 && (await viaPort()).status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(await (await viaPort()).text(), 'served')

    // A request to its envd without the access token does not resume it.
    assert.equal((await pause(daemon, sandbox.sandboxId)).status, 204)
    const anonymous = await fetch(`${daemon.url}/health`, {
      headers: { 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': '49983' } })
    assert.equal(anonymous.status, 502)
    assert.equal((await sandbox.getInfo()).state, 'paused')
    // The SDK's next call (envd, with its token) resumes it, with its processes.
    assert.equal((await sandbox.commands.run('echo back')).stdout, 'back\n')
    assert.equal((await sandbox.getInfo()).state, 'running')
    assert.equal(await (await viaPort()).text(), 'served')

    // A request to one of its ports resumes it too (it has no traffic token).
    assert.equal((await pause(daemon, sandbox.sandboxId)).status, 204)
    assert.equal(await (await viaPort()).text(), 'served')
    assert.equal((await sandbox.getInfo()).state, 'running')

    // A sandbox without autoResume stays paused.
    assert.equal((await pause(daemon, plain.sandboxId)).status, 204)
    await assert.rejects(plain.commands.run('echo no'))
    assert.equal((await plain.getInfo()).state, 'paused')
  } finally {
    await sandbox.kill()
    await plain.kill()
  }
})

test('a pause that does not fit on the host is refused: 507, the sandbox keeps running', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 600000 })
  const checkpoints = join(daemon.stateDir, 'checkpoints')
  mkdirSync(checkpoints, { recursive: true })
  // The park directory's filesystem, 1 MiB: less than any sandbox's pause needs.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', checkpoints])
  try {
    await sandbox.commands.run('nohup sleep 100002 >/dev/null 2>&1 &')
    for (const body of [undefined, { memory: false }]) {
      const res = await pause(daemon, sandbox.sandboxId, body)
      assert.equal(res.status, 507)
      assert.match((await res.json()).message, /not enough room on the host.*keeps running/)
      assert.equal((await sandbox.getInfo()).state, 'running')
      assert.match((await sandbox.commands.run('pgrep -f "sleep 100002"')).stdout, /\d+/)
    }
  } finally {
    execFileSync('umount', [checkpoints])
    await sandbox.kill()
  }
})
