// Every resource limit of a sandbox is set by the containment step "set rlimits"
// (src/runtime/rlimits.h), none inherited from isoboxd: the daemon runs under prlimit(1)
// with odd soft limits, and /proc/self/limits inside shows the configured values, as
// `user` and as `root`. A hard limit of isoboxd's below a configured value is the
// sandbox's ceiling (never raised).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Sandbox, startDaemon } from './sdk.js'

const MiB = 1024 * 1024

// Per /proc/<pid>/limits row: kSandboxRlimits' [soft, hard], the prlimit(1) option and an
// odd soft limit for isoboxd.
const LIMITS = {
  'Max cpu time': [['unlimited', 'unlimited'], 'cpu', 99991],
  'Max file size': [['unlimited', 'unlimited'], 'fsize', 2 ** 40 + 7],
  'Max data size': [['unlimited', 'unlimited'], 'data', 2 ** 44 + 5],
  'Max stack size': [[String(8 * MiB), 'unlimited'], 'stack', 12 * MiB + 4096],
  'Max core file size': [['0', '0'], 'core', 12345],
  'Max resident set': [['unlimited', 'unlimited'], 'rss', 2 ** 30],
  'Max processes': [['unlimited', 'unlimited'], 'nproc', 4321],
  'Max open files': [['1048576', '1048576'], 'nofile', 777],
  'Max locked memory': [[String(8 * MiB), String(8 * MiB)], 'memlock', MiB + 1],
  'Max address space': [['unlimited', 'unlimited'], 'as', 2 ** 45 + 9],
  'Max file locks': [['unlimited', 'unlimited'], 'locks', 99],
  'Max pending signals': [['16384', '16384'], 'sigpending', 77],
  'Max msgqueue size': [['819200', '819200'], 'msgqueue', 1000],
  'Max nice priority': [['0', '0'], 'nice', 1],
  'Max realtime priority': [['0', '0'], 'rtprio', 1],
  'Max realtime timeout': [['unlimited', 'unlimited'], 'rttime', 12345],
}

// Rows of a /proc/<pid>/limits text, as { row: [soft, hard] }.
function parseLimits(text) {
  const rows = {}
  for (const line of text.split('\n').slice(1)) {
    if (line.trim() === '') continue
    const [soft, hard] = line.slice(26).trim().split(/\s+/)
    rows[line.slice(0, 26).trim()] = [soft, hard]
  }
  return rows
}

const min = (a, b) => (a === 'unlimited' ? b : b === 'unlimited' ? a : String(Math.min(Number(a), Number(b))))

// This process's hard limits, which isoboxd inherits: raising one needs CAP_SYS_RESOURCE,
// which neither the test nor the sandbox init may have, so they cap what is expected.
const OWN_HARD = Object.fromEntries(Object.entries(parseLimits(readFileSync('/proc/self/limits', 'utf8')))
  .map(([row, [, hard]]) => [row, hard]))

// What a sandbox must show when isoboxd's hard limits are `hard` (by row).
function expected(hard) {
  const rows = {}
  for (const [row, [[soft, max]]] of Object.entries(LIMITS)) {
    const capped = min(max, hard[row])
    rows[row] = [min(soft, capped), capped]
  }
  return rows
}

// prlimit options giving isoboxd the odd soft limits (within its hard ones), with the hard
// limits of `lower` (by row) lowered.
function oddOptions(lower = {}) {
  return Object.entries(LIMITS).map(([row, [, option, odd]]) => {
    const hard = lower[row] ?? OWN_HARD[row]
    const soft = min(String(odd), hard)
    return lower[row] ? `--${option}=${soft}:${hard}` : `--${option}=${soft}:`
  })
}

const dirs = []
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

// Starts isoboxd under prlimit with `limits` (prlimit options).
async function startLimitedDaemon(limits) {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-rlimits-'))
  dirs.push(dir)
  const wrapper = join(dir, 'isoboxd')
  writeFileSync(wrapper, `#!/bin/sh\nexec prlimit ${limits.join(' ')} -- '${process.env.ISOBOXD}' "$@"\n`)
  chmodSync(wrapper, 0o755)
  const binary = process.env.ISOBOXD
  process.env.ISOBOXD = wrapper
  try {
    return await startDaemon()
  } finally {
    process.env.ISOBOXD = binary
  }
}

// /proc/self/limits of a command in `sandbox`, as { row: [soft, hard] }.
async function limitsOf(sandbox, user) {
  const { stdout } = await sandbox.commands.run('cat /proc/self/limits', { user })
  return parseLimits(stdout)
}

async function withSandbox(limits, check) {
  const daemon = await startLimitedDaemon(limits)
  let sandbox
  try {
    sandbox = await Sandbox.create()
    await check(sandbox)
  } finally {
    await sandbox?.kill()
    await daemon.stop()
  }
}

test('every rlimit is the configured one, whatever isoboxd was started with', async () => {
  await withSandbox(oddOptions(), async (sandbox) => {
    for (const user of ['user', 'root']) {
      assert.deepEqual(await limitsOf(sandbox, user), expected(OWN_HARD), user)
    }
  })
})

test('isoboxd\'s hard limits are the sandbox\'s ceiling', async () => {
  const lower = {
    'Max open files': '4321',
    'Max pending signals': '999',
    'Max stack size': String(16 * MiB),
  }
  await withSandbox(oddOptions(lower), async (sandbox) => {
    const limits = await limitsOf(sandbox, 'user')
    assert.deepEqual(limits, expected({ ...OWN_HARD, ...lower }))
    assert.deepEqual(limits['Max open files'], ['4321', '4321'])
    assert.deepEqual(limits['Max pending signals'], ['999', '999'])
  })
})
