// Environment variables in every language, through the unmodified @e2b/code-interpreter
// package: sandbox-wide ones (given at create) are visible; per-execution ones apply to
// that execution only, and afterwards the variable is back to its sandbox-wide value or
// unset.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
import { startDaemon } from './harness.js'

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  sandbox = await Sandbox.create({ envs: { TEST_ENV_VAR: 'supertest' } })
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

// How each language reads a variable (with a fallback) and what its output looks like.
const languages = {
  python: {
    read: (name) => `import os; os.getenv("${name}", "default")`,
    value: (execution) => execution.results[0]?.text.trim(),
    shown: (value) => value,
  },
  javascript: {
    read: (name) => `process.env.${name} || "default"`,
    value: (execution) => execution.results[0]?.text.trim(),
    shown: (value) => value,
  },
  typescript: {
    read: (name) => `process.env.${name} || "default"`,
    value: (execution) => execution.results[0]?.text.trim(),
    shown: (value) => value,
  },
  r: {
    read: (name) => `Sys.getenv("${name}", unset = "default")`,
    value: (execution) => execution.results[0]?.text.trim(),
    shown: (value) => `[1] "${value}"`,
  },
  bash: {
    read: (name) => `echo \${${name}:-default}`,
    value: (execution) => execution.logs.stdout.join('').trim(),
    shown: (value) => value,
  },
}

for (const [language, { read, value, shown }] of Object.entries(languages)) {
  test(`${language}: sandbox-wide, per-execution, restored, overwritten`, async () => {
    const global = await sandbox.runCode(read('TEST_ENV_VAR'), { language })
    assert.equal(value(global), shown('supertest'))

    const scoped = await sandbox.runCode(read('FOO'), { language, envs: { FOO: "it's bar" } })
    assert.equal(scoped.error, undefined)
    assert.equal(value(scoped), shown("it's bar"))
    const unset = await sandbox.runCode(read('FOO'), { language })
    assert.equal(value(unset), shown('default'))

    const overwritten = await sandbox.runCode(read('TEST_ENV_VAR'),
      { language, envs: { TEST_ENV_VAR: 'overwrite' } })
    assert.equal(value(overwritten), shown('overwrite'))
    const restored = await sandbox.runCode(read('TEST_ENV_VAR'), { language })
    assert.equal(value(restored), shown('supertest'))
  })
}

test('per-execution env vars do not count as executions or print anything', async () => {
  const context = await sandbox.createCodeContext()
  const first = await sandbox.runCode('print("one")', { context, envs: { A: '1', B: '2' } })
  assert.equal(first.executionCount, 1)
  assert.deepEqual(first.logs.stdout, ['one\n'])
  const second = await sandbox.runCode('import os; os.environ.get("A")', { context })
  assert.equal(second.executionCount, 2)
  assert.deepEqual(second.results, [])
})
