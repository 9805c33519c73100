// Streaming through the unmodified @e2b/code-interpreter package: each callback fires once
// per output, in the order the code produced them; display() results are not the main
// result; and the NDJSON lines themselves (count first, keepalive in silence, end last).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
import { startDaemon, executeLines } from './harness.js'

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

test('onResult, onError, onStdout and onStderr fire once each', async () => {
  const results = []
  const result = await sandbox.runCode('x = 1; x', { onResult: (r) => results.push(r) })
  assert.equal(results.length, 1)
  assert.equal(result.results[0].text, '1')
  assert.equal(results[0].text, '1')

  const errors = []
  const failed = await sandbox.runCode('xyz', { onError: (e) => errors.push(e) })
  assert.equal(errors.length, 1)
  assert.equal(failed.error.name, 'NameError')
  assert.equal(errors[0].name, 'NameError')

  const stdout = []
  const printed = await sandbox.runCode('print("hello")', { onStdout: (m) => stdout.push(m) })
  assert.equal(stdout.length, 1)
  assert.equal(stdout[0].line, 'hello\n')
  assert.equal(stdout[0].error, false)
  assert.deepEqual(printed.logs.stdout, ['hello\n'])

  const stderr = []
  const warned = await sandbox.runCode(
    'import sys; print("This is an error message", file=sys.stderr)',
    { onStderr: (m) => stderr.push(m) })
  assert.equal(stderr.length, 1)
  assert.equal(stderr[0].error, true)
  assert.deepEqual(warned.logs.stderr, ['This is an error message\n'])
})

test('callbacks see outputs in the order the code produced them', async () => {
  const events = []
  const code = [
    'import sys, time',
    'from IPython.display import display',
    'print("first"); sys.stdout.flush(); time.sleep(0.2)',
    'print("second", file=sys.stderr); sys.stderr.flush(); time.sleep(0.2)',
    'display(3)',
    'time.sleep(0.2); print("third")',
    '"last"',
  ].join('\n')
  // The kernel may send one print() as two stream messages ("first", then "\n") when its
  // flush timer fires between the two writes, as Jupyter does: adjacent chunks of one
  // stream are joined; the order across streams and results is what is checked.
  const push = (kind, text) => {
    const last = events.length - 1
    if (kind !== 'result' && last >= 0 && events[last].startsWith(`${kind}:`)) {
      events[last] += text
    } else {
      events.push(`${kind}:${text}`)
    }
  }
  const execution = await sandbox.runCode(code, {
    onStdout: (m) => push('stdout', m.line),
    onStderr: (m) => push('stderr', m.line),
    onResult: (r) => push('result', `${r.text}:${r.isMainResult}`),
  })
  assert.deepEqual(events, [
    'stdout:first\n', 'stderr:second\n', 'result:3:false', 'stdout:third\n', 'result:last:true',
  ])
  assert.equal(execution.text, 'last')
})

test('stdout comes in whole lines however the kernel chunks it; a lone partial line still comes', async () => {
  const chunks = []
  const code = [
    'import sys, time',
    // Two stream messages from the kernel: "a" (flushed on its own) and "b\n".
    'sys.stdout.write("a"); sys.stdout.flush(); sys.stdout.write("b\\n"); sys.stdout.flush()',
    // A progress dot that waits: sent by itself, not held until the line ends.
    'sys.stdout.write("."); sys.stdout.flush(); time.sleep(0.6)',
    'print(" done")',
    'sys.stdout.write("tail")',
  ].join('\n')
  const execution = await sandbox.runCode(code, { onStdout: (m) => chunks.push(m.line) })
  assert.deepEqual(chunks, ['ab\n', '.', ' done\n', 'tail'])
  assert.deepEqual(execution.logs.stdout, ['ab\n', '.', ' done\n', 'tail'])
})

test('a plot and an expression stream two results', async () => {
  const results = []
  const code = [
    'import matplotlib.pyplot as plt',
    'import numpy as np',
    'x = np.linspace(0, 20, 100)',
    'plt.plot(x, np.sin(x))',
    'plt.show()',
    'x[0]',
  ].join('\n')
  await sandbox.runCode(code, { onResult: (r) => results.push(r) })
  assert.equal(results.length, 2)
  assert.ok(results[0].png)
  assert.equal(results[0].isMainResult, false)
  assert.equal(results[1].text, '0.0')
  assert.equal(results[1].isMainResult, true)
})

test('display() gives results that are not the main result', async () => {
  const execution = await sandbox.runCode(
    'from IPython.display import display, HTML, Markdown\n' +
    'display(HTML("<b>bold</b>"))\ndisplay(Markdown("*it*"))\n1 + 1')
  assert.equal(execution.results.length, 3)
  assert.equal(execution.results[0].html, '<b>bold</b>')
  assert.equal(execution.results[0].isMainResult, false)
  assert.equal(execution.results[1].markdown, '*it*')
  assert.equal(execution.results[1].isMainResult, false)
  assert.equal(execution.results[2].text, '2')
  assert.equal(execution.results[2].isMainResult, true)
  assert.equal(execution.text, '2')
})

test('NDJSON: execution count first, keepalive in silence, end_of_execution last', async () => {
  const lines = await executeLines(sandbox,
    { code: 'import time\nprint("a")\ntime.sleep(6)\nprint("b")\n7' })
  assert.equal(lines[0].type, 'number_of_executions')
  assert.ok(Number.isInteger(lines[0].execution_count))
  assert.equal(lines[lines.length - 1].type, 'end_of_execution')
  const types = lines.map((l) => l.type)
  const a = types.indexOf('stdout')
  const keepalive = types.indexOf('keepalive')
  assert.ok(keepalive > a, types.join(','))
  assert.equal(lines[a].text, 'a\n')
  assert.match(lines[a].timestamp, /^\d{4}-\d\d-\d\dT/)
  const result = lines.find((l) => l.type === 'result')
  assert.deepEqual(result, { type: 'result', text: '7', extra: {}, is_main_result: true })
})

test('NDJSON: only the first error of an execution is sent', async () => {
  const lines = await executeLines(sandbox, { code: 'raise ValueError("one")' })
  const errors = lines.filter((l) => l.type === 'error')
  assert.equal(errors.length, 1)
  assert.equal(errors[0].name, 'ValueError')
  assert.equal(errors[0].value, 'one')
  assert.match(errors[0].traceback, /ValueError: one/)
  assert.doesNotMatch(errors[0].traceback, /\u001b\[/) // no ANSI colours
})
