// Code contexts and state through the unmodified @e2b/code-interpreter package: the
// default contexts, create (with and without options), list order, independence, restart,
// remove, execution counts, and the errors for unknown contexts and conflicting options.
// One sandbox serves every test; each test that counts or checks state uses its own context.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
import { InvalidArgumentError, NotFoundError } from 'e2b'
import { startDaemon, interpreterFetch } from './harness.js'

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

test('a new sandbox has default python and javascript contexts in /home/user', async () => {
  const contexts = await sandbox.listCodeContexts()
  const languages = contexts.map((c) => c.language)
  assert.ok(languages.includes('python'), JSON.stringify(contexts))
  assert.ok(languages.includes('javascript'), JSON.stringify(contexts))
  for (const context of contexts) assert.equal(context.cwd, '/home/user')
})

test('variables persist between runs; executionCount counts them', async () => {
  const context = await sandbox.createCodeContext()
  const first = await sandbox.runCode('x = 1', { context })
  assert.equal(first.executionCount, 1)
  assert.equal(first.text, undefined)
  const second = await sandbox.runCode('x += 1; x', { context })
  assert.equal(second.text, '2')
  assert.equal(second.executionCount, 2)
})

test('the default python context keeps state too', async () => {
  await sandbox.runCode('kept = "yes"')
  assert.equal((await sandbox.runCode('kept')).text, 'yes')
  assert.equal((await sandbox.runCode('kept', { language: 'python' })).text, 'yes')
})

test('a context created with no options is python in /home/user, listed last', async () => {
  const context = await sandbox.createCodeContext()
  assert.equal(context.language, 'python')
  assert.equal(context.cwd, '/home/user')
  const contexts = await sandbox.listCodeContexts()
  assert.deepEqual(contexts[contexts.length - 1], context)
})

test('a context created with options has them, and runs there', async () => {
  const context = await sandbox.createCodeContext({ language: 'python', cwd: '/tmp' })
  assert.equal(context.language, 'python')
  assert.equal(context.cwd, '/tmp')
  const contexts = await sandbox.listCodeContexts()
  assert.deepEqual(contexts[contexts.length - 1], context)
  assert.equal((await sandbox.runCode('import os; os.getcwd()', { context })).text, '/tmp')
})

test('contexts are listed in creation order', async () => {
  const a = await sandbox.createCodeContext()
  const b = await sandbox.createCodeContext({ language: 'javascript' })
  const ids = (await sandbox.listCodeContexts()).map((c) => c.id)
  assert.deepEqual(ids.slice(-2), [a.id, b.id])
})

test('a new context is independent of the default one', async () => {
  await sandbox.runCode('shared_name = 1')
  const context = await sandbox.createCodeContext()
  const output = await sandbox.runCode('shared_name', { context })
  assert.equal(output.error.name, 'NameError')
  assert.equal(output.error.value, "name 'shared_name' is not defined")
})

test('restart clears the context state', async () => {
  const context = await sandbox.createCodeContext()
  await sandbox.runCode('x = 1', { context })
  await sandbox.restartCodeContext(context.id)
  const execution = await sandbox.runCode('x', { context })
  assert.equal(execution.error?.name, 'NameError')
  assert.equal(execution.error?.value, "name 'x' is not defined")
  assert.equal((await sandbox.runCode('x = 2; x', { context })).text, '2')
})

test('remove: the context is gone from the list and cannot run code', async () => {
  const context = await sandbox.createCodeContext()
  await sandbox.removeCodeContext(context.id)
  const contexts = await sandbox.listCodeContexts()
  assert.ok(!contexts.map((c) => c.id).includes(context.id))
  await assert.rejects(sandbox.runCode('1', { context }), (error) => {
    assert.ok(error instanceof NotFoundError, String(error))
    assert.match(error.message, new RegExp(`Context ${context.id} not found`))
    return true
  })
  await assert.rejects(sandbox.restartCodeContext(context.id), NotFoundError)
})

test('an unknown context id is a 404 naming it', async () => {
  await assert.rejects(sandbox.runCode('1', { context: { id: 'no-such-context' } }), (error) => {
    assert.ok(error instanceof NotFoundError, String(error))
    assert.match(error.message, /Context no-such-context not found/)
    return true
  })
})

test('context and language together: the SDK refuses, and so does the server (400)', async () => {
  const context = await sandbox.createCodeContext()
  await assert.rejects(sandbox.runCode('1', { context, language: 'python' }), InvalidArgumentError)
  const response = await interpreterFetch(sandbox, '/execute', {
    method: 'POST',
    body: JSON.stringify({ code: '1', context_id: context.id, language: 'python' }),
  })
  assert.equal(response.status, 400)
  assert.match(await response.text(), /Only one of context_id or language/)
})

test('bad requests are 400s naming the problem', async () => {
  const cases = [
    [{ code: 1 }, /'code' must be a string/],
    [{ code: '1', language: 'cobol' }, /unsupported language 'cobol'/],
    [{ code: '1', env_vars: { 'BAD-NAME': 'x' } }, /env var name 'BAD-NAME' is not valid/],
    [{ code: '1', env_vars: { OK: 1 } }, /env_vars values must be strings/],
  ]
  for (const [body, message] of cases) {
    const response = await interpreterFetch(sandbox, '/execute', {
      method: 'POST', body: JSON.stringify(body),
    })
    assert.equal(response.status, 400, JSON.stringify(body))
    assert.match(await response.text(), message)
  }
  const created = await interpreterFetch(sandbox, '/contexts', {
    method: 'POST', body: JSON.stringify({ cwd: '/no/such/dir' }),
  })
  assert.equal(created.status, 400)
  assert.match(await created.text(), /cwd \/no\/such\/dir is not an accessible absolute directory/)
})

test('a reconnected sandbox object runs code in the same contexts', async () => {
  await sandbox.runCode('reconnected = 41')
  const again = await Sandbox.connect(sandbox.sandboxId)
  assert.equal((await again.runCode('reconnected + 1')).text, '42')
})
