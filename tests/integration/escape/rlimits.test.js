// Every resource limit of a sandbox is set by the containment step "set rlimits"
// (src/runtime/rlimits.h), none inherited from isoboxd: the daemon runs under prlimit(1)
// with odd soft limits, and /proc/self/limits inside shows the configured values, as
// `user` and as `root`. A hard limit of isoboxd's below a configured value is the
// sandbox's ceiling (never raised).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Sandbox, startDaemon } from './sdk.js'

const MiB = 1024 * 1024

// kSandboxRlimits: [soft, hard] per /proc/<pid>/limits row.
const CONFIGURED = {
  'Max cpu time': ['unlimited', 'unlimited'],
  'Max file size': ['unlimited', 'unlimited'],
  'Max data size': ['unlimited', 'unlimited'],
  'Max stack size': [String(8 * MiB), 'unlimited'],
  'Max core file size': ['0', '0'],
  'Max resident set': ['unlimited', 'unlimited'],
  'Max processes': ['unlimited', 'unlimited'],
  'Max open files': ['1048576', '1048576'],
  'Max locked memory': [String(8 * MiB), String(8 * MiB)],
  'Max address space': ['unlimited', 'unlimited'],
  'Max file locks': ['unlimited', 'unlimited'],
  'Max pending signals': ['16384', '16384'],
  'Max msgqueue size': ['819200', '819200'],
  'Max nice priority': ['0', '0'],
  'Max realtime priority': ['0', '0'],
  'Max realtime timeout': ['unlimited', 'unlimited'],
}

// isoboxd's own limits, soft:hard: odd soft values, hard values at or above the configured
// ones (the test runs as root, which may raise them).
const ODD = [
  '--cpu=99991:unlimited', `--fsize=${2 ** 40 + 7}:unlimited`, `--data=${2 ** 44 + 5}:unlimited`,
  `--stack=${12 * MiB + 4096}:unlimited`, '--core=12345:unlimited', `--rss=${2 ** 30}:unlimited`,
  '--nproc=4321:unlimited', '--nofile=4096:1048576', `--memlock=${MiB + 1}:${32 * MiB}`,
  `--as=${2 ** 45 + 9}:unlimited`, '--locks=99:unlimited', '--sigpending=77:99999',
  '--msgqueue=1000:2000000', '--nice=1:5', '--rtprio=1:5', '--rttime=12345:unlimited',
]

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
  const rows = {}
  for (const line of stdout.split('\n').slice(1)) {
    if (line.trim() === '') continue
    const name = line.slice(0, 26).trim()
    const [soft, hard] = line.slice(26).trim().split(/\s+/)
    rows[name] = [soft, hard]
  }
  return rows
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
  await withSandbox(ODD, async (sandbox) => {
    for (const user of ['user', 'root']) {
      assert.deepEqual(await limitsOf(sandbox, user), CONFIGURED, user)
    }
  })
})

test('isoboxd\'s hard limits are the sandbox\'s ceiling', async () => {
  const lower = ODD.map((option) => {
    if (option.startsWith('--nofile=')) return '--nofile=1000:4321'
    if (option.startsWith('--sigpending=')) return '--sigpending=10:999'
    if (option.startsWith('--stack=')) return `--stack=${MiB}:${16 * MiB}`
    return option
  })
  await withSandbox(lower, async (sandbox) => {
    const limits = await limitsOf(sandbox, 'user')
    assert.deepEqual(limits['Max open files'], ['4321', '4321'])
    assert.deepEqual(limits['Max pending signals'], ['999', '999'])
    assert.deepEqual(limits['Max stack size'], [String(8 * MiB), String(16 * MiB)])
    assert.deepEqual(limits['Max processes'], ['unlimited', 'unlimited'])
  })
})
