// Limits are real (issue 3, point 5): a memory bomb is OOM-killed and reported as
// oom_killed, a fork bomb stops at the pids limit (pids_limit), dd past the disk limit
// fails with ENOSPC (disk_full); throughout, the attacked sandbox's agent and a second
// sandbox keep answering. The termination reason is an Isobox field of the Connect end
// event, which the SDK does not expose: commands are started through the raw API here.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { Sandbox, privateName, startDaemon } from './sdk.js'

const PROBE = process.env.ESCAPE_PROBE
let daemon
let other  // the bystander sandbox

// process.Process/Start with the Connect JSON streaming protocol; returns the end event
// and the stdout/stderr text.
async function start(sandbox, cmd, args, { user = 'user' } = {}) {
  const message = Buffer.from(JSON.stringify({ process: { cmd, args } }))
  const envelope = Buffer.alloc(5 + message.length)
  envelope.writeUInt32BE(message.length, 1)
  message.copy(envelope, 5)
  const response = await fetch(`${daemon.url}/process.Process/Start`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/connect+json',
      'E2b-Sandbox-Id': sandbox.sandboxId,
      'E2b-Sandbox-Port': '49983',
      'X-Access-Token': sandbox.envdAccessToken ?? '',
      Authorization: 'Basic ' + Buffer.from(`${user}:`).toString('base64'),
    },
    body: envelope,
  })
  const body = Buffer.from(await response.arrayBuffer())
  const out = { stdout: '', stderr: '', end: undefined }
  for (let at = 0; at + 5 <= body.length;) {
    const length = body.readUInt32BE(at + 1)
    const event = JSON.parse(body.subarray(at + 5, at + 5 + length).toString()).event
    at += 5 + length
    if (event?.data?.stdout) out.stdout += Buffer.from(event.data.stdout, 'base64').toString()
    if (event?.data?.stderr) out.stderr += Buffer.from(event.data.stderr, 'base64').toString()
    if (event?.end) out.end = event.end
  }
  return out
}

async function withProbe() {
  const sandbox = await Sandbox.create()
  await sandbox.files.write('/tmp/escape_probe', readFileSync(PROBE).buffer)
  await sandbox.commands.run('chmod 755 /tmp/escape_probe')
  return sandbox
}

// The bystander answers a command in under a second (a functional check, generous).
async function assertResponsive(sandbox, what) {
  const started = Date.now()
  const result = await sandbox.commands.run('true')
  const ms = Date.now() - started
  assert.equal(result.exitCode, 0)
  assert.ok(ms < 1000, `${what}: took ${ms} ms`)
}

function cgroupValue(sandbox, controller, file) {
  const group = `/sys/fs/cgroup/${controller}/isobox/${privateName(sandbox.sandboxId)}`
  return readFileSync(`${group}/${file}`, 'utf8').trim()
}

before(async () => {
  assert.ok(PROBE, 'ESCAPE_PROBE must name the escape_probe binary')
  daemon = await startDaemon()
  other = await Sandbox.create()
})

after(async () => {
  await other?.kill()
  await daemon?.stop()
})

test('memory bomb: OOM-killed in the user cgroup, reported as oom_killed', async () => {
  const sandbox = await withProbe()
  try {
    const bomb = start(sandbox, '/tmp/escape_probe', ['membomb'])
    await assertResponsive(other, 'memory bomb')
    const { end } = await bomb
    assert.equal(end.status, 'signal: killed')  // E2B's text, unchanged
    assert.deepEqual(end.isobox, { reason: 'oom_killed', signal: 9 })
    // The agent survived: files still answer.
    await sandbox.files.write('after-oom.txt', 'ok')
    assert.equal(await sandbox.files.read('after-oom.txt'), 'ok')
  } finally {
    await sandbox.kill()
  }
})

test('fork bomb: stops at the pids limit, reported as pids_limit', async () => {
  const sandbox = await withProbe()
  try {
    const { stdout, end } = await start(sandbox, '/tmp/escape_probe', ['forkbomb'])
    assert.equal(stdout, 'fork EAGAIN\n')
    assert.equal(end.isobox.reason, 'pids_limit')
    // The bomb's processes are still there, at the limit; nothing beyond it.
    const max = Number(cgroupValue(sandbox, 'pids', 'user/pids.max'))
    const current = Number(cgroupValue(sandbox, 'pids', 'user/pids.current'))
    assert.ok(current <= max && current > max / 2, `${current} of ${max}`)
    await assertResponsive(other, 'fork bomb')
    // envd forks in its own cgroup's reserve: a new command still starts and runs.
    const echo = await start(sandbox, '/bin/echo', ['still here'])
    assert.equal(echo.stdout, 'still here\n')
  } finally {
    await sandbox.kill()
  }
})

test('disk: dd past the limit fails with ENOSPC, reported as disk_full', async () => {
  const sandbox = await Sandbox.create()
  try {
    const dd = start(sandbox, '/bin/dd', ['if=/dev/zero', 'of=/home/user/fill', 'bs=4M'])
    await assertResponsive(other, 'disk fill')
    const { stderr, end } = await dd
    assert.match(stderr, /No space left on device/)
    assert.deepEqual(end.isobox, { reason: 'disk_full', exitCode: 1 })
    // Only this sandbox's disk is full: its agent answers, the host is untouched.
    assert.equal((await sandbox.commands.run('echo ok')).stdout, 'ok\n')
    await sandbox.commands.run('rm /home/user/fill')
    assert.equal((await sandbox.commands.run('echo ok')).stdout, 'ok\n')
  } finally {
    await sandbox.kill()
  }
})
