// The walking skeleton, driven by the unmodified `e2b` npm package: create a real
// sandbox, run commands, write and read files, kill it; two sandboxes at once stay apart.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, CommandExitError } from 'e2b'
import { startDaemon } from './harness.js'

let daemon
before(async () => { daemon = await startDaemon() })
after(async () => { await daemon?.stop() })

async function runOk(sandbox, cmd, opts) {
  const result = await sandbox.commands.run(cmd, opts)
  assert.equal(result.exitCode, 0, `${cmd}: ${result.stderr}`)
  return result.stdout
}

test('one sandbox: command, exit code, files, identity, kill', async () => {
  const sandbox = await Sandbox.create()
  assert.match(sandbox.sandboxId, /^[a-z0-9]{20}$/)
  assert.equal(await sandbox.isRunning(), true)

  await assert.rejects(sandbox.commands.run('echo hi; echo err >&2; exit 3'), (error) => {
    assert.ok(error instanceof CommandExitError, `got ${error}`)
    assert.equal(error.exitCode, 3)
    assert.equal(error.stdout, 'hi\n')
    assert.equal(error.stderr, 'err\n')
    return true
  })

  const info = await sandbox.files.write('a/b.txt', 'x')
  assert.equal(info.path, '/home/user/a/b.txt')
  assert.equal(await sandbox.files.read('a/b.txt'), 'x')
  assert.equal(await runOk(sandbox, 'stat -c "%U %a" a/b.txt a'), 'user 644\nuser 755\n')

  const [uid, hostname, pids] = (await runOk(sandbox,
    'id -u; hostname; ls /proc | grep -c ^[0-9]')).trim().split('\n')
  assert.equal(uid, '1000')
  assert.equal(hostname, sandbox.sandboxId)
  // envd (PID 1), bash, ls, grep: nothing of the host or of other sandboxes.
  assert.ok(Number(pids) >= 3 && Number(pids) <= 5, `saw ${pids} processes`)
  assert.equal(await runOk(sandbox, 'cat /proc/1/comm'), 'isobox-envd\n')
  assert.equal(await runOk(sandbox, 'whoami', { user: 'root' }), 'root\n')
  assert.equal(await runOk(sandbox, 'echo $FOO', { envs: { FOO: 'bar' } }), 'bar\n')
  assert.equal(await runOk(sandbox, 'pwd', { cwd: '/tmp' }), '/tmp\n')

  assert.equal(await sandbox.kill(), true)
  assert.equal(await sandbox.isRunning(), false)
  assert.equal(await sandbox.kill(), false)
})

test('two sandboxes at once cannot see each other', async () => {
  const [a, b] = await Promise.all([Sandbox.create(), Sandbox.create()])
  try {
    assert.notEqual(a.sandboxId, b.sandboxId)
    await Promise.all([a.files.write('mine.txt', 'from a'), b.files.write('mine.txt', 'from b')])
    assert.equal(await a.files.read('mine.txt'), 'from a')
    assert.equal(await b.files.read('mine.txt'), 'from b')

    const marker = `isobox-marker-${Date.now()}`
    await a.commands.run(`exec -a ${marker} sleep 600`, { background: true })
    await runOk(a, `pgrep -f ${marker}`)
    const seen = await b.commands.run(`pgrep -f ${marker}`).catch((error) => error)
    assert.equal(seen.exitCode, 1, 'b must not see a\'s process')
    assert.equal(await runOk(b, 'hostname'), `${b.sandboxId}\n`)
    assert.notEqual(await runOk(a, 'id -u -r; cat /proc/self/uid_map'),
      await runOk(b, 'id -u -r; cat /proc/self/uid_map'))
  } finally {
    await Promise.all([a.kill(), b.kill()])
  }
  assert.equal(await a.isRunning(), false)
  assert.equal(await b.isRunning(), false)
})

test('bad API key and unknown sandbox answer as the SDK expects', async () => {
  await assert.rejects(Sandbox.create({ apiKey: 'e2b_' + 'f'.repeat(40) }),
    (error) => error.name === 'AuthenticationError')
  assert.equal(await Sandbox.kill('doesnotexist00000000'), false)
})
