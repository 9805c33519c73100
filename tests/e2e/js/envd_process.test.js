// process.Process through the unmodified `e2b` SDK against a real isoboxd: terminals,
// stdin, re-attach, list, kill, timeouts, and the error classes the SDK raises.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  Sandbox, CommandExitError, InvalidArgumentError, NotFoundError, TimeoutError,
} from 'e2b'
import { startDaemon } from './harness.js'

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  sandbox = await Sandbox.create()
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

// Polls `read()` until it contains `text` (deadline 10 s).
async function waitForText(read, text) {
  const deadline = Date.now() + 10000
  while (!read().includes(text)) {
    if (Date.now() > deadline) throw new Error(`no "${text}" in: ${read()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

test('pty: create, input, resize, reconnect, exit', async () => {
  const decoder = new TextDecoder()
  let out = ''
  const terminal = await sandbox.pty.create({
    cols: 80, rows: 24, envs: { ABC: 'from-env' },
    onData: (data) => { out += decoder.decode(data) },
  })
  const input = (text) => sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode(text))
  await input('echo $ABC; tput cols\n')
  await waitForText(() => out, 'from-env')
  await waitForText(() => out, '80')
  await sandbox.pty.resize(terminal.pid, { cols: 100, rows: 40 })
  await input('tput cols\n')
  await waitForText(() => out, '100')

  await terminal.disconnect()
  let again = ''
  const reattached = await sandbox.pty.connect(terminal.pid, {
    onData: (data) => { again += decoder.decode(data) },
  })
  await input('echo still-$((40+2))\n')
  await waitForText(() => again, 'still-42')
  await input('exit\n')
  const result = await reattached.wait()
  assert.equal(result.exitCode, 0)
})

test('pty: kill, and kill of an unknown pid is false', async () => {
  const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: () => {} })
  assert.equal(await sandbox.pty.kill(terminal.pid), true)
  await assert.rejects(terminal.wait(), CommandExitError)
  assert.equal(await sandbox.pty.kill(999999), false)
})

test('stdin: sendStdin and closeStdin', async () => {
  const handle = await sandbox.commands.run('cat', { background: true, stdin: true })
  await sandbox.commands.sendStdin(handle.pid, 'hello\n')
  await sandbox.commands.sendStdin(handle.pid, 'multi\nline\n')
  await sandbox.commands.closeStdin(handle.pid)
  const result = await handle.wait()
  assert.equal(result.stdout, 'hello\nmulti\nline\n')
})

test('commands: connect after the first client left, list, kill', async () => {
  const handle = await sandbox.commands.run(
    'for i in 1 2 3 4 5; do echo tick$i; sleep 0.2; done', { background: true })
  await handle.disconnect()  // the starting stream goes away; the process keeps running
  let seen = ''
  const attached = await sandbox.commands.connect(handle.pid, { onStdout: (data) => { seen += data } })
  const result = await attached.wait()
  assert.equal(result.exitCode, 0)
  assert.match(seen, /tick5\n$/)

  const sleeper = await sandbox.commands.run('sleep 600', { background: true })
  const listed = await sandbox.commands.list()
  assert.ok(listed.some((p) => p.pid === sleeper.pid && p.args.includes('sleep 600')))
  assert.equal(await sandbox.commands.kill(sleeper.pid), true)
  await assert.rejects(sleeper.wait(), CommandExitError)
  const check = await sandbox.commands.run(`kill -0 ${sleeper.pid}`).catch((e) => e)
  assert.notEqual(check.exitCode, 0)
  assert.equal(await sandbox.commands.kill(999999), false)
  await assert.rejects(sandbox.commands.connect(999999), NotFoundError)
})

test('per-command env does not leak; errors map to SDK classes', async () => {
  assert.equal((await sandbox.commands.run('echo $LEAK', { envs: { LEAK: 'x' } })).stdout, 'x\n')
  assert.equal((await sandbox.commands.run('echo "[$LEAK]"')).stdout, '[]\n')
  await assert.rejects(sandbox.commands.run('exit 4'),
    (error) => error instanceof CommandExitError && error.exitCode === 4)
  await assert.rejects(sandbox.commands.run('pwd', { cwd: '/no/such/dir' }), InvalidArgumentError)
  await assert.rejects(sandbox.commands.run('sleep 10', { timeoutMs: 500 }), TimeoutError)
})

test('commands start with default signal dispositions and nothing blocked', async () => {
  // envd ignores and blocks signals of its own (SIGPIPE...); its children must not
  // inherit that (base/child_error.h ResetSignalsForExec).
  const status = await sandbox.commands.run("grep -E '^Sig(Blk|Ign):' /proc/self/status")
  assert.equal(status.stdout, 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n')
})
