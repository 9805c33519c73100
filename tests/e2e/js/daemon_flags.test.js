// Start-up flags checked end to end: API keys from a file or the environment (never on the
// command line, where `ps` shows them) and the refusal of a sandbox uid range that is
// someone else's.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startDaemon, until } from './harness.js'

const run = promisify(execFile)

test('--api-key-file and ISOBOXD_API_KEY give admin keys that ps and environ do not show', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-keys-'))
  const file = join(dir, 'keys')
  const fromFile = ['e2b_file_one_0123456789abcdef', 'e2b_file_two_0123456789abcdef']
  const fromEnv = 'e2b_env_0123456789abcdef0123'
  writeFileSync(file, `# operators\n${fromFile[0]}\n\n  ${fromFile[1]}  \n`)
  chmodSync(file, 0o600)
  const daemon = await startDaemon({
    apiKey: null, args: ['--api-key-file', file], env: { ISOBOXD_API_KEY: fromEnv },
  })
  try {
    const cmdline = readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8')
    const environ = readFileSync(`/proc/${daemon.pid}/environ`, 'utf8')
    for (const key of [...fromFile, fromEnv]) {
      assert.ok(!cmdline.includes(key), 'not on the command line')
      assert.ok(!environ.includes(key), 'not in the environment')
      // Admin keys: operator routes answer.
      const pools = await fetch(`${daemon.url}/isobox/pools`, { headers: { 'X-API-KEY': key } })
      assert.equal(pools.status, 200, key)
    }
    const wrong = await fetch(`${daemon.url}/v2/sandboxes`, { headers: { 'X-API-KEY': 'e2b_x' } })
    assert.equal(wrong.status, 401)
    // Keys for one run: nothing stored, and no first-start key made.
    assert.equal(execFileSync(process.env.ISOBOXD,
      ['--state-dir', daemon.stateDir, 'api-key', 'list'], { encoding: 'utf8' }), '')
    assert.ok(!existsSync(join(daemon.stateDir, 'api-keys')))
  } finally {
    await daemon.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('--api-key warns that ps shows it, in --help and in the log', async () => {
  const help = execFileSync(process.env.ISOBOXD, ['--help'], { encoding: 'utf8' })
  assert.match(help.replace(/\s+/g, ' '), /--api-key .*Visible to every local user in ps/)
  const dir = mkdtempSync(join(tmpdir(), 'isobox-warn-'))
  const child = spawn(process.env.ISOBOXD, ['--state-dir', join(dir, 'state'), '--port', '0',
    '--api-key', 'e2b_on_the_command_line', '--pool', 'base=0', '--pool', 'code-interpreter-v1=0',
    '--on-exit', 'kill', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  try {
    await until('the warning', () => stderr.includes('prefer --api-key-file or ISOBOXD_API_KEY'))
    assert.ok(!stderr.includes('e2b_on_the_command_line'), 'the log never shows the key')
  } finally {
    child.kill('SIGTERM')
    await exited
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a missing or empty --api-key-file stops the start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-keys-'))
  try {
    const start = (file) => run(process.env.ISOBOXD,
      ['--state-dir', join(dir, 'state'), '--port', '0', '--api-key-file', file])
    await assert.rejects(start(join(dir, 'nope')), (e) => e.code === 1 &&
      e.stderr.includes(`${join(dir, 'nope')} does not exist`))
    writeFileSync(join(dir, 'empty'), '# nothing yet\n')
    await assert.rejects(start(join(dir, 'empty')), (e) => e.code === 1 &&
      e.stderr.includes('holds no key'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('isoboxd refuses a --uid-base whose range another runtime documents as its own', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-uids-'))
  const state = join(dir, 'state')
  try {
    // 2^30, the default before this check: inside systemd-nspawn's container ranges.
    await assert.rejects(run(process.env.ISOBOXD, ['--state-dir', state, '--port', '0',
      '--api-key', 'e2b_x', '--uid-base', String(2 ** 30), '--max-sandboxes', '16']), (e) => {
      assert.equal(e.code, 1)
      assert.match(e.stderr, /systemd's container uid ranges/)
      assert.match(e.stderr, /change --uid-base or --max-sandboxes/)
      return true
    })
    assert.ok(!existsSync(state), 'refused before it made anything')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
