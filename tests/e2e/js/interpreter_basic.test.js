// The code interpreter through the unmodified @e2b/code-interpreter package: state,
// contexts, errors, streaming callbacks, env vars, rich results and other languages.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
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

test('python state persists between runs; errors come back named', async () => {
  const first = await sandbox.runCode('x = 1; x')
  assert.equal(first.text, '1')
  const second = await sandbox.runCode('x += 41; x')
  assert.equal(second.text, '42')
  const failed = await sandbox.runCode('undefined_name')
  assert.equal(failed.error.name, 'NameError')
  assert.match(failed.error.value, /undefined_name/)
})

test('streaming callbacks see stdout and stderr; env vars apply to one run', async () => {
  const stdout = []
  const stderr = []
  const execution = await sandbox.runCode(
    'import os, sys\nprint("out")\nprint("err", file=sys.stderr)\nos.environ.get("ISOBOX_X")',
    { envs: { ISOBOX_X: 'set' }, onStdout: (m) => stdout.push(m.line), onStderr: (m) => stderr.push(m.line) })
  assert.equal(execution.text, 'set')
  assert.deepEqual(stdout, ['out\n'])
  assert.deepEqual(stderr, ['err\n'])
  const after = await sandbox.runCode('import os; os.environ.get("ISOBOX_X")')
  assert.equal(after.text, undefined)  // None: no result, and the variable is gone
})

test('contexts are independent, listed, restarted and removed', async () => {
  const context = await sandbox.createCodeContext({ language: 'python', cwd: '/tmp' })
  assert.equal((await sandbox.runCode('import os; os.getcwd()', { context })).text, '/tmp')
  await sandbox.runCode('y = 5', { context })
  const other = await sandbox.runCode('y', { language: 'python' })
  assert.equal(other.error.name, 'NameError')
  const listed = await sandbox.listCodeContexts()
  assert.equal(listed[listed.length - 1].id, context.id)
  await sandbox.restartCodeContext(context)
  assert.equal((await sandbox.runCode('y', { context })).error.name, 'NameError')
  await sandbox.removeCodeContext(context)
  assert.ok(!(await sandbox.listCodeContexts()).some((c) => c.id === context.id))
})

test('matplotlib figures come back as png with a chart; DataFrames as data', async () => {
  const plot = await sandbox.runCode(
    'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()')
  const image = plot.results.find((r) => r.png)
  assert.ok(image, 'a png result')
  assert.equal(image.chart?.type, 'line')
  assert.equal(image.chart?.title, 'squares')
  const frame = await sandbox.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2]})')
  assert.ok(frame.results[0].html.includes('<table'))
  assert.ok(frame.results[0].data)
})

test('bash runs as its own language', async () => {
  const execution = await sandbox.runCode('echo hello from $0 && whoami', { language: 'bash' })
  assert.match(execution.logs.stdout.join(''), /hello from .*\nuser\n/)
})
