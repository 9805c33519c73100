// Interrupts, dying kernels and killed sandboxes, through the unmodified
// @e2b/code-interpreter package: a client timeout interrupts the kernel (state kept) so the
// next run starts at once; a kernel that dies is reported with the reason and replaced; a
// sandbox killed during runCode gives the SDK's TimeoutError.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
import { TimeoutError } from 'e2b'
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

// A client timeout, then a quick run in the same context: it must not queue behind the
// abandoned one.
async function timesOutThenRuns(language, slow, quick, expected, setup) {
  if (setup) await sandbox.runCode(setup, { language })
  await assert.rejects(sandbox.runCode(slow, { language, timeoutMs: 2000 }), (error) => {
    assert.ok(error instanceof TimeoutError, String(error))
    assert.match(error.message, /Execution timed out/)
    return true
  })
  const execution = await sandbox.runCode(quick, { language, timeoutMs: 10000 })
  assert.equal(execution.error, undefined, JSON.stringify(execution.error))
  return expected(execution)
}

test('python: a timed-out run is interrupted; the next runs at once, state kept', async () => {
  await timesOutThenRuns('python', 'import time; time.sleep(300)', 'kept + 1',
    (execution) => assert.equal(execution.text, '42'), 'kept = 41')
})

test('javascript: a busy loop is interrupted too', async () => {
  await timesOutThenRuns('js', 'while (true) {}', 'jsKept + 1',
    (execution) => assert.equal(execution.text, '8'), 'var jsKept = 7')
})

test('bash: the running command is interrupted; the shell and its variables survive',
  async () => {
    await timesOutThenRuns('bash', 'sleep 300', 'echo $BASH_KEPT',
      (execution) => assert.deepEqual(execution.logs.stdout, ['still here\n']),
      'BASH_KEPT="still here"')
  })

test('a kernel that exits is reported with its status and replaced', async () => {
  const context = await sandbox.createCodeContext()
  await sandbox.runCode('lost = 1', { context })
  const died = await sandbox.runCode('import os; os._exit(1)', { context })
  assert.equal(died.error.name, 'KernelDied')
  assert.match(died.error.value, /The python kernel exited with status 1/)
  const next = await sandbox.runCode('lost', { context })
  assert.equal(next.error.name, 'NameError')
  assert.equal((await sandbox.runCode('1 + 1', { context })).text, '2')
})

test('a kernel killed by a signal (as the OOM killer does) is reported and replaced', async () => {
  const context = await sandbox.createCodeContext()
  const died = await sandbox.runCode('import os, signal; os.kill(os.getpid(), signal.SIGKILL)',
    { context })
  assert.equal(died.error.name, 'KernelDied')
  assert.match(died.error.value, /killed by signal SIGKILL \(out of memory, or killed\)/)
  assert.equal((await sandbox.runCode('2 + 2', { context })).text, '4')
})

test('a kernel that runs out of memory is reported and replaced', async () => {
  const context = await sandbox.createCodeContext()
  // The sandbox's memory limit (its cgroup) stops this long before the host's.
  const died = await sandbox.runCode('hog = []\nwhile True:\n    hog.append(bytearray(1 << 26))',
    { context, timeoutMs: 120000 })
  assert.equal(died.error?.name, 'KernelDied', JSON.stringify(died.error))
  assert.match(died.error.value, /killed by signal SIGKILL \(out of memory, or killed\)/)
  assert.equal((await sandbox.runCode('3 + 3', { context })).text, '6')
})

test('a sandbox killed during runCode gives a TimeoutError', async () => {
  const doomed = await Sandbox.create()
  const execution = doomed.runCode(
    'import time\nopen("/tmp/started", "w").close()\ntime.sleep(300)', { timeoutMs: 300000 })
  execution.catch(() => {}) // asserted below
  // Kill it once the execution is surely running.
  const deadline = Date.now() + 30000
  while (!(await doomed.files.exists('/tmp/started'))) {
    assert.ok(Date.now() < deadline, 'the execution did not start within 30 s')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  await doomed.kill()
  await assert.rejects(execution, (error) => {
    assert.ok(error instanceof TimeoutError, String(error))
    assert.match(error.message, /sandbox was killed while the request was in progress/)
    return true
  })
})
