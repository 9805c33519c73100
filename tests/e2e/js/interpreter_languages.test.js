// Every language the code interpreter serves, through the unmodified
// @e2b/code-interpreter package: python, javascript and typescript (tslab), r (IRkernel)
// and bash; their results, errors, state and default working directory.
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

test('javascript: the last expression is the result', async () => {
  const execution = await sandbox.runCode('1+1', { language: 'js' })
  assert.equal(execution.text, '2')
  assert.equal(execution.results.length, 1)
  assert.equal(execution.results[0].isMainResult, true)
  assert.deepEqual(execution.logs.stdout, [])
  assert.equal((await sandbox.runCode('({a: 1, b: [1, 2]})', { language: 'js' })).text,
    '{ a: 1, b: [ 1, 2 ] }')
  const nothing = await sandbox.runCode('undefined', { language: 'javascript' })
  assert.deepEqual(nothing.results, [])
})

test('javascript: console.log is stdout, state persists, ESM imports and top-level await work',
  async () => {
    const logged = await sandbox.runCode('console.log("Hello World!")', { language: 'js' })
    assert.deepEqual(logged.logs.stdout, ['Hello World!\n'])
    assert.deepEqual(logged.results, [])
    await sandbox.runCode('let counter = 40', { language: 'js' })
    assert.equal((await sandbox.runCode('counter += 2; counter', { language: 'js' })).text, '42')
    const imported = await sandbox.runCode(
      'import { readFileSync } from "fs"\nconsole.log(typeof readFileSync)', { language: 'js' })
    assert.deepEqual(imported.logs.stdout, ['function\n'])
    const awaited = await sandbox.runCode('await Promise.resolve("Hello World!")',
      { language: 'js' })
    assert.equal(awaited.text, 'Hello World!')
  })

test('javascript: errors come back named, with the next run unaffected', async () => {
  const thrown = await sandbox.runCode('throw new TypeError("bad value")', { language: 'js' })
  assert.equal(thrown.error.name, 'TypeError')
  assert.equal(thrown.error.value, 'bad value')
  assert.match(thrown.error.traceback, /TypeError: bad value/)
  assert.deepEqual(thrown.logs.stderr, [])
  const missing = await sandbox.runCode('notDefinedAnywhere', { language: 'js' })
  assert.equal(missing.error.name, 'ReferenceError')
  assert.match(missing.error.value, /notDefinedAnywhere/)
  const syntax = await sandbox.runCode('let = = 1', { language: 'js' })
  assert.equal(syntax.error.name, 'SyntaxError')
  // tslab cancels requests that arrive just after a failure; ours must not be.
  assert.equal((await sandbox.runCode('2+2', { language: 'js' })).text, '4')
})

test('typescript: types check, the last expression is the result', async () => {
  const execution = await sandbox.runCode(
    'const message: string = "Hello World!"; console.log(message); message.length',
    { language: 'ts' })
  assert.deepEqual(execution.logs.stdout, ['Hello World!\n'])
  assert.equal(execution.text, '12')
  const typed = await sandbox.runCode('const n: number = "text"', { language: 'typescript' })
  assert.equal(typed.error.name, 'CompileError')
  assert.match(typed.error.value, /not assignable to type 'number'/)
})

test('r: IRkernel results and errors', async () => {
  const execution = await sandbox.runCode('x <- c(1, 2, 3)\nsum(x)', { language: 'r' })
  assert.equal(execution.results[0]?.text.trim(), '[1] 6')
  const failed = await sandbox.runCode('stop("boom")', { language: 'r' })
  assert.ok(failed.error, 'an error')
  assert.match(failed.error.value, /boom/)
  assert.equal((await sandbox.runCode('x[2]', { language: 'r' })).results[0]?.text.trim(), '[1] 2')
})

test('bash runs as its own language, with state, stdout and stderr apart', async () => {
  const execution = await sandbox.runCode('echo hello from $0 && whoami', { language: 'bash' })
  assert.equal(execution.logs.stdout.join(''), 'hello from /bin/bash\nuser\n')
  await sandbox.runCode('GREETING=hi; cd /tmp', { language: 'bash' })
  const after = await sandbox.runCode('echo $GREETING; pwd; echo oops >&2', { language: 'bash' })
  assert.equal(after.logs.stdout.join(''), 'hi\n/tmp\n')
  assert.deepEqual(after.logs.stderr, ['oops\n'])
  assert.equal(after.error, undefined)
})

test('bash: a failing last command is an error; commands reading stdin do not hang', async () => {
  const failed = await sandbox.runCode('false', { language: 'bash' })
  assert.equal(failed.error.name, 'BashError')
  assert.equal(failed.error.value, 'exit status 1')
  const reading = await sandbox.runCode('cat; read line; echo after-read', { language: 'bash' })
  assert.equal(reading.logs.stdout.join(''), 'after-read\n')
})

test('bash: exit ends that bash; the next run gets a new one', async () => {
  const exited = await sandbox.runCode('exit 3', { language: 'bash' })
  assert.equal(exited.error.name, 'BashExited')
  assert.match(exited.error.value, /bash exited with status 3/)
  const next = await sandbox.runCode('echo back', { language: 'bash' })
  assert.deepEqual(next.logs.stdout, ['back\n'])
})

test('python shell escapes run in /home/user', async () => {
  const execution = await sandbox.runCode('!pwd')
  assert.equal(execution.logs.stdout.join().trim(), '/home/user')
})

test('every language starts in /home/user', async () => {
  const python = await sandbox.runCode('from pathlib import Path; print(Path.cwd())',
    { language: 'python' })
  assert.equal(python.logs.stdout.join().trim(), '/home/user')
  assert.equal((await sandbox.runCode('process.cwd()', { language: 'js' })).text, '/home/user')
  assert.equal((await sandbox.runCode('process.cwd()', { language: 'ts' })).text, '/home/user')
  assert.equal((await sandbox.runCode('getwd()', { language: 'r' })).results[0]?.text.trim(),
    '[1] "/home/user"')
  const bash = await sandbox.createCodeContext({ language: 'bash' })
  assert.equal((await sandbox.runCode('pwd', { context: bash })).logs.stdout.join().trim(),
    '/home/user')
})
