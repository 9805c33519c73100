// bench/run's body (see bench/run and docs/benchmarks.md): isoboxd against its peers on
// this machine, in one run. Prints a markdown table (what, n, p50, p99 or value, peer,
// ratio) and writes JSON. Asserts nothing about timings.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync }
  from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, release, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { downloadRows } from './net.mjs'
import { BWRAP, UNSHARE, ociBundle } from './peers.mjs'
import { busyCpuMs, clientCpuMs, costPer, costSnapshot } from './proc.mjs'
import { CONCURRENCY, CREATE_PEERS, rowIds } from './rows.mjs'
import { templateRows } from './templates.mjs'
import { pauseRows } from './pause.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const repo = resolve(here, '../..')
const e2eDir = join(repo, 'tests/e2e/js')
const { privateName, startDaemon } = await import(pathToFileURL(join(e2eDir, 'harness.js')).href)
const sdkRequire = createRequire(join(e2eDir, 'package.json'))
const { Sandbox } = sdkRequire('e2b')
const { Sandbox: CodeSandbox } = sdkRequire('@e2b/code-interpreter')

// A uid range of its own, so the benchmark's sandboxes never share host ids with other
// daemons on this machine (isoboxd's default base is 2^30).
// Its own 512 sandbox uid slots, clear of other runtimes' ranges (isoboxd refuses those)
// and of the slots other daemons on this machine use first (from the default base 0x70000000).
const UID_BASE = String(0x74000000)
const DAEMON_ARGS = ['--uid-base', UID_BASE, '--max-sandboxes', '512']
const MIB = 1024 * 1024
const CGROUP_MEMORY = '/sys/fs/cgroup/memory/isobox'

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const options = { quick: false, json: join(repo, 'bench/results/latest.json') }
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--quick') options.quick = true
    else if (argv[i] === '--json' && i + 1 < argv.length) options.json = resolve(argv[++i])
    else if (argv[i] === '--only' && i + 1 < argv.length) options.only = argv[++i].split(',')
    else if (argv[i] === '--peer-inner') options.peerInner = argv[++i]
    else {
      console.error(`bench/run: unknown argument '${argv[i]}'\nusage: bench/run [--quick] [--json PATH] [--only PART,...]`)
      process.exit(2)
    }
  }
  return options
}

const options = parseArgs(process.argv.slice(2))
// Counts per mode: samples of each create row (a multiple of its concurrency), SDK cold
// paths, sustained seconds, density caps, round trips, download size and rounds.
const counts = options.quick
  ? { create: { 1: 5, 10: 10, 50: 50 }, warmup: 0, sdk: 2, runcode: 1, jupyterCold: 1,
      sustainedS: 3, density: 20, densityCi: 2, densityS: 30, roundtrip: 20,
      downloadMiB: 4, downloads: 1 }
  : { create: { 1: 100, 10: 200, 50: 200 }, warmup: 2, sdk: 20, runcode: 10, jupyterCold: 5,
      sustainedS: 60, density: 1000, densityCi: 1000, densityS: 300, roundtrip: 300,
      downloadMiB: 256, downloads: 5 }
// Density stops before the host runs short: below this much MemAvailable, no more creates.
const DENSITY_MEM_FLOOR = 3 * 1024 * MIB

// ---------------------------------------------------------------- statistics

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

function summary(samples) {
  const s = [...samples].sort((a, b) => a - b)
  return { n: s.length, p50: percentile(s, 0.5), p99: percentile(s, 0.99) }
}

const now = () => Number(process.hrtime.bigint()) / 1e6

// ---------------------------------------------------------------- processes

function spawnTimed(cmd, args) {
  return new Promise((resolvePromise, reject) => {
    const start = now()
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => { if (stderr.length < 2000) stderr += d })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      const ms = now() - start
      if (code === 0) resolvePromise(ms)
      else reject(new Error(`${cmd} exited ${code ?? signal}: ${stderr.trim().slice(0, 300)}`))
    })
  })
}

// `rounds` rounds of `concurrency` commands started at once; each sample is one command's
// start -> exit. Warm-up rounds (full mode) are not counted.
async function timeConcurrent(concurrency, total, makeCommand) {
  const samples = []
  let index = 0
  for (let round = -counts.warmup; samples.length < total; ++round) {
    const batch = []
    for (let i = 0; i < concurrency; ++i) batch.push(spawnTimed(...makeCommand(index++)))
    const times = await Promise.all(batch)
    if (round >= 0) samples.push(...times)
  }
  return samples
}

function which(cmd) {
  const found = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' })
  return found.status === 0 ? found.stdout.trim() : null
}

// Runs inside a private mount namespace with /sys/fs/cgroup/unified unmounted (crun and
// runc pick the cgroup v2 manager on this hybrid layout otherwise and fail): times one OCI
// runtime at each concurrency and prints {c: samples}.
async function peerInner(runtime) {
  const bundle = ociBundle(runtime)
  const out = {}
  try {
    for (const c of CONCURRENCY) {
      out[c] = await timeConcurrent(c, counts.create[c], (i) =>
        [runtime, ['run', '--bundle', bundle, `isobox-bench-${process.pid}-${c}-${i}`]])
    }
  } finally {
    rmSync(bundle, { recursive: true, force: true })
  }
  process.stdout.write(JSON.stringify(out))
}

if (options.peerInner) {
  await peerInner(options.peerInner)
  process.exit(0)
}

// ---------------------------------------------------------------- rows

const rows = new Map()
function record(id, row) {
  rows.set(id, { id, ...row })
  const shown = row.skipped ? `skipped: ${row.skipped}`
    : row.p50 !== undefined ? `p50 ${row.p50.toFixed(2)} ${row.unit}` : `${row.value} ${row.unit}`
  console.error(`  ${id}: ${shown}`)
}
function recordSamples(id, what, samples, extra = {}) {
  record(id, { what, unit: 'ms', ...summary(samples), ...extra })
}
function skip(id, what, reason) { record(id, { what, skipped: reason }) }

// ---------------------------------------------------------------- isoboxd helpers

async function withDaemon(pools, fn, args = []) {
  const daemon = await startDaemon({ pools, args: [...DAEMON_ARGS, ...args] })
  try {
    return await fn(daemon)
  } finally {
    await daemon.stop()
  }
}

function headers(daemon) {
  return { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' }
}

async function create(daemon, templateID = 'base', timeout = 600) {
  const response = await fetch(`${daemon.url}/sandboxes`, {
    method: 'POST', headers: headers(daemon), body: JSON.stringify({ templateID, timeout }),
  })
  const text = await response.text()
  if (response.status !== 201) throw new Error(`create ${templateID}: ${response.status} ${text}`)
  return JSON.parse(text).sandboxID
}

async function kill(daemon, id) {
  const response = await fetch(`${daemon.url}/sandboxes/${id}`, {
    method: 'DELETE', headers: headers(daemon),
  })
  await response.arrayBuffer()
  if (response.status === 204) return
  // Gone already: say how it ended (GET /isobox/sandboxes/{id} keeps ended sandboxes).
  const record = await fetch(`${daemon.url}/isobox/sandboxes/${id}`, { headers: headers(daemon) })
  const ended = record.status === 200 ? (await record.json()).isobox : await record.text()
  throw new Error(`kill ${id}: ${response.status}; record: ${JSON.stringify(ended)}`)
}

async function pools(daemon) {
  const response = await fetch(`${daemon.url}/isobox/pools`, { headers: headers(daemon) })
  return response.json()
}

// isoboxd does not retry a pool fill that failed (e.g. a spawn that timed out on a loaded
// machine); the next create of that template restarts it. So a pool that has not grown for
// 15 s gets one untimed create + kill.
async function waitPool(daemon, template, ready, timeoutMs = 180000) {
  const deadline = Date.now() + timeoutMs
  let last = -1
  let lastChange = Date.now()
  for (;;) {
    const have = (await pools(daemon))[template].ready
    if (have >= ready) return
    if (Date.now() > deadline) throw new Error(`the ${template} pool did not reach ${ready}`)
    if (have !== last) {
      last = have
      lastChange = Date.now()
    } else if (Date.now() - lastChange > 15000) {
      console.error(`  (the ${template} pool stalled at ${have}; one create restarts its fill)`)
      try { await kill(daemon, await create(daemon, template)) } catch { /* the fill restarted */ }
      lastChange = Date.now()
    }
    await sleep(20)
  }
}

// create -> 201 (isoboxd answers only once the sandbox's envd answers /health), in rounds
// of `concurrency`; with `pooled`, each round starts only once the pool holds a sandbox for
// every create of the round, so every sample is a pool hit.
async function timeCreates(daemon, concurrency, total, pooled) {
  const samples = []
  for (let round = -Math.min(1, counts.warmup); samples.length < total; ++round) {
    if (pooled) await waitPool(daemon, 'base', concurrency)
    const batch = Array.from({ length: concurrency }, async () => {
      const start = now()
      const id = await create(daemon)
      return { ms: now() - start, id }
    })
    const done = await Promise.all(batch)
    await Promise.all(done.map(({ id }) => kill(daemon, id)))
    if (round >= 0) samples.push(...done.map(({ ms }) => ms))
  }
  return samples
}

// ---------------------------------------------------------------- memory

function memAvailable() {
  const line = readFileSync('/proc/meminfo', 'utf8').split('\n').find((l) => l.startsWith('MemAvailable:'))
  return Number(line.split(/\s+/)[1]) * 1024
}

function readNumber(path) {
  try { return Number(readFileSync(path, 'utf8').trim()) } catch { return null }
}

function pidsIn(dir) {
  const pids = []
  const walk = (d) => {
    try {
      for (const line of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) {
        if (line) pids.push(Number(line))
      }
      for (const entry of readdirSync(d, { withFileTypes: true })) {
        if (entry.isDirectory()) walk(join(d, entry.name))
      }
    } catch { /* the group went away */ }
  }
  walk(dir)
  return pids
}

function pss(pid) {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
    const match = rollup.match(/^Pss:\s+(\d+) kB/m)
    return match ? Number(match[1]) * 1024 : 0
  } catch { return 0 }
}

// Per idle sandbox: the sandbox cgroup's memory.usage_in_bytes (v1, hierarchical: the
// agent and user groups, page cache and kernel memory charged to them) and the PSS of
// every process in it (smaps_rollup), averaged over `ids`. The group is named after a
// digest of the id (harness.js privateName).
function sandboxMemory(ids) {
  let cgroup = 0
  let proportional = 0
  let measured = 0
  for (const id of ids) {
    const dir = join(CGROUP_MEMORY, privateName(id))
    const usage = readNumber(join(dir, 'memory.usage_in_bytes'))
    if (usage === null) continue
    cgroup += usage
    for (const pid of pidsIn(dir)) proportional += pss(pid)
    ++measured
  }
  return measured ? { cgroup: cgroup / measured, pss: proportional / measured, measured } : null
}

// ---------------------------------------------------------------- benchmarks

async function createRows() {
  console.error('create -> usable (no pool)')
  await withDaemon(['base=0', 'code-interpreter-v1=0'], async (daemon) => {
    for (const c of CONCURRENCY) {
      recordSamples(`create.c${c}.nopool`, `isobox create -> envd healthy, no pool, c=${c}`,
        await timeCreates(daemon, c, counts.create[c], false))
    }
  })
  // Networking's cost on a create: the same creates on a daemon whose sandboxes have
  // loopback only (--no-network), as every sandbox had before issue 19.
  console.error('create -> usable (no pool, loopback only)')
  await withDaemon(['base=0', 'code-interpreter-v1=0'], async (daemon) => {
    recordSamples('create.c1.nopool.nonet', 'isobox create -> envd healthy, no pool, c=1, --no-network',
      await timeCreates(daemon, 1, counts.create[1], false))
  }, ['--no-network'])
  console.error('create -> usable (warm pool)')
  await withDaemon([`base=${Math.max(...CONCURRENCY)}`, 'code-interpreter-v1=0'], async (daemon) => {
    for (const c of CONCURRENCY) {
      recordSamples(`create.c${c}.pool`, `isobox create -> envd healthy, warm pool, c=${c}`,
        await timeCreates(daemon, c, counts.create[c], true))
    }
  })
}

async function peerRows() {
  console.error('create peers')
  const local = {
    true: ['/bin/true', []],
    unshare: ['unshare', UNSHARE],
    bwrap: ['bwrap', BWRAP],
    // gVisor on its ptrace platform (no usable KVM here), as Debian 12 packages it.
    runsc: ['runsc', ['--platform=ptrace', '--rootless=false', '--network=none', 'do', 'true']],
  }
  for (const peer of CREATE_PEERS) {
    const binary = peer.key === 'true' ? '/bin/true' : which(peer.key)
    const ids = CONCURRENCY.map((c) => `peer.${peer.key}.c${c}`)
    const label = (c) => `${peer.what}, c=${c}`
    if (!binary) {
      const reason = `${peer.key} is not installed (scripts/install adds it)`
      CONCURRENCY.forEach((c, i) => skip(ids[i], label(c), reason))
      continue
    }
    try {
      if (local[peer.key]) {
        const [cmd, args] = local[peer.key]
        for (const c of CONCURRENCY) {
          recordSamples(`peer.${peer.key}.c${c}`, label(c),
            await timeConcurrent(c, counts.create[c], () => [cmd, args]))
        }
      } else {
        const inner = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
          'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"', process.execPath,
          fileURLToPath(import.meta.url), ...(options.quick ? ['--quick'] : []),
          '--peer-inner', peer.key], { encoding: 'utf8', maxBuffer: 64 * MIB })
        if (inner.status !== 0) throw new Error(inner.stderr.trim().split('\n').slice(-3).join(' '))
        const out = JSON.parse(inner.stdout)
        for (const c of CONCURRENCY) recordSamples(`peer.${peer.key}.c${c}`, label(c), out[c])
      }
    } catch (error) {
      CONCURRENCY.forEach((c, i) => { if (!rows.has(ids[i])) skip(ids[i], label(c), `failed: ${error.message}`) })
    }
  }
}

async function sdkFirstRows() {
  const firstCommand = async (daemon, pooled) => {
    const samples = []
    for (let i = 0; i < counts.sdk + counts.warmup; ++i) {
      if (pooled) await waitPool(daemon, 'base', 1)
      const start = now()
      const sandbox = await Sandbox.create({ timeoutMs: 120000 })
      const result = await sandbox.commands.run('true')
      const ms = now() - start
      if (result.exitCode !== 0) throw new Error(`true exited ${result.exitCode}`)
      await sandbox.kill()
      if (i >= counts.warmup) samples.push(ms)
    }
    return samples
  }
  const firstRunCode = async (daemon, pooled) => {
    const samples = []
    for (let i = 0; i < counts.runcode; ++i) {
      if (pooled) await waitPool(daemon, 'code-interpreter-v1', 1)
      const start = now()
      const sandbox = await CodeSandbox.create({ timeoutMs: 120000 })
      const execution = await sandbox.runCode('1+1')
      const ms = now() - start
      if (execution.text !== '2') throw new Error(`1+1 gave ${execution.text}`)
      await sandbox.kill()
      samples.push(ms)
    }
    return samples
  }
  console.error('SDK: create -> first result (no pool)')
  await withDaemon(['base=0', 'code-interpreter-v1=0'], async (daemon) => {
    recordSamples('sdk.first_command.nopool', "SDK Sandbox.create -> commands.run('true'), no pool",
      await firstCommand(daemon, false))
    recordSamples('sdk.first_runcode.nopool', "SDK Sandbox.create -> runCode('1+1'), no pool",
      await firstRunCode(daemon, false))
  })
  console.error('SDK: create -> first result (warm pool)')
  await withDaemon(['base=2', 'code-interpreter-v1=1'], async (daemon) => {
    // Both pools full first: a code interpreter's kernels starting meanwhile would take
    // the cores from the commands measured.
    await waitPool(daemon, 'base', 2)
    await waitPool(daemon, 'code-interpreter-v1', 1)
    recordSamples('sdk.first_command.pool', "SDK Sandbox.create -> commands.run('true'), warm pool",
      await firstCommand(daemon, true))
    recordSamples('sdk.first_runcode.pool', "SDK Sandbox.create -> runCode('1+1'), warm pool",
      await firstRunCode(daemon, true))
  })
  console.error('jupyter_client cold start')
  const cold = python(['cold', String(counts.jupyterCold)])
  if (cold.error) skip('peer.jupyter_cold', 'jupyter_client start_new_kernel -> 1+1', cold.error)
  else recordSamples('peer.jupyter_cold', 'jupyter_client start_new_kernel -> 1+1', cold.samples)
}

function python(args) {
  const result = spawnSync('/usr/bin/python3', [join(here, 'jupyter_direct.py'), ...args],
    { encoding: 'utf8', maxBuffer: 16 * MIB })
  if (result.status !== 0) {
    return { error: `jupyter_client failed: ${(result.stderr || '').trim().split('\n').pop()}` }
  }
  return JSON.parse(result.stdout)
}

// Creates and kills for `seconds` with a few callers at once; the rate is completed
// create+kill pairs per second; `what` also says where a pair's cost went: the machine's
// busy CPU, isoboxd's own and its reaped children's (zygotes, inits, agents), this
// client's, and the bytes written to the host's disks.
async function sustainedRows() {
  const workers = 4
  console.error(`sustained create+kill for ${counts.sustainedS} s`)
  await withDaemon(['base=0', 'code-interpreter-v1=0'], async (daemon) => {
    const end = Date.now() + counts.sustainedS * 1000
    let done = 0
    let errors = 0
    let firstError
    const start = now()
    const before = costSnapshot(daemon.pid)
    await Promise.all(Array.from({ length: workers }, async () => {
      while (Date.now() < end) {
        try {
          await kill(daemon, await create(daemon))
          ++done
        } catch (error) {
          // Counted and reported, not fatal: the rate is of completed pairs only.
          ++errors
          firstError ??= error.message
        }
      }
    }))
    const seconds = (now() - start) / 1000
    const cost = costPer(before, costSnapshot(daemon.pid), done)
    const failures = errors ? `, ${errors} failed, first: ${firstError.slice(0, 160)}` : ''
    record('sustained.isobox', { what: `isobox create + kill loop, ${workers} callers, ${counts.sustainedS} s, ` +
      `${cost.busyMs.toFixed(1)} ms busy CPU per pair (isoboxd ${cost.daemonMs.toFixed(1)}, ` +
      `its children ${cost.daemonChildrenMs.toFixed(1)}, client ${cost.clientMs.toFixed(1)}), ` +
      `${cost.hostWritesKiB.toFixed(0)} KiB host disk writes per pair${failures}`,
      unit: '/s', value: +(done / seconds).toFixed(1), n: done, errors, firstError,
      cpuMsPerPair: cost.busyMs, cost })
  })
  const end = Date.now() + counts.sustainedS * 1000
  let done = 0
  const start = now()
  const cpuStart = busyCpuMs()
  const clientStart = clientCpuMs()
  await Promise.all(Array.from({ length: workers }, async () => {
    while (Date.now() < end) {
      await spawnTimed('bwrap', BWRAP)
      ++done
    }
  }))
  const seconds = (now() - start) / 1000
  const cpuPerRun = (busyCpuMs() - cpuStart) / Math.max(done, 1)
  const clientPerRun = (clientCpuMs() - clientStart) / Math.max(done, 1)
  record('sustained.bwrap', { what: `bwrap /bin/true loop, ${workers} callers, ${counts.sustainedS} s, ` +
    `${cpuPerRun.toFixed(1)} ms busy CPU per run (client ${clientPerRun.toFixed(1)})`,
    unit: '/s', value: +(done / seconds).toFixed(1), n: done, cpuMsPerRun: +cpuPerRun.toFixed(2),
    clientMsPerRun: +clientPerRun.toFixed(2) })
}

// Idle sandboxes at once: creates (2 callers) until the cap, the first failure, the host's
// MemAvailable floor or the time budget, whichever comes first, then measures memory.
async function densityRows(kind, template, cap) {
  const label = kind === 'base' ? 'idle sandboxes (envd only)' : 'idle code-interpreter sandboxes'
  console.error(`density: ${label}, up to ${cap}`)
  await withDaemon(['base=0', 'code-interpreter-v1=0'], async (daemon) => {
    const before = memAvailable()
    const ids = []
    let stopped = `reached the cap of ${cap}`
    const deadline = Date.now() + counts.densityS * 1000
    let reserved = 0
    const worker = async () => {
      while (reserved < cap && !stopped.startsWith('limit')) {
        if (memAvailable() < DENSITY_MEM_FLOOR) {
          stopped = `limit: host MemAvailable below ${DENSITY_MEM_FLOOR / MIB} MiB (stopped)`
          return
        }
        if (Date.now() > deadline) {
          stopped = `limit: the benchmark's time budget of ${counts.densityS} s (not a sandbox limit)`
          return
        }
        ++reserved
        try {
          if (kind === 'base') {
            ids.push(await create(daemon, template, 3600))
          } else {
            // Counted once its Python kernel has answered, so every one holds a live kernel.
            const sandbox = await CodeSandbox.create({ timeoutMs: 3600000 })
            const execution = await sandbox.runCode('1+1')
            if (execution.text !== '2') throw new Error(`1+1 gave ${execution.text}`)
            ids.push(sandbox.sandboxId)
          }
        } catch (error) {
          stopped = `limit: ${error.message.slice(0, 200)}`
          return
        }
      }
    }
    await Promise.all([worker(), worker()])
    // Let the agents settle (lazy startup work, freed buffers) before measuring.
    await sleep(2000)
    const mem = sandboxMemory(ids)
    const after = memAvailable()
    record(`density.${kind}.count`, { what: `${label} at once (${stopped})`, unit: 'sandboxes',
      value: ids.length, n: ids.length, stopped })
    const per = (bytes) => +(bytes / MIB).toFixed(2)
    if (mem) {
      record(`density.${kind}.cgroup_mib`, { what: `memory per ${label}: sandbox cgroup usage`,
        unit: 'MiB', value: per(mem.cgroup), n: mem.measured })
      record(`density.${kind}.pss_mib`, { what: `memory per ${label}: PSS of its processes`,
        unit: 'MiB', value: per(mem.pss), n: mem.measured })
    } else {
      const reason = ids.length ? `no readable cgroup below ${CGROUP_MEMORY}` : 'no sandbox was created'
      skip(`density.${kind}.cgroup_mib`, `memory per ${label}: sandbox cgroup usage`, reason)
      skip(`density.${kind}.pss_mib`, `memory per ${label}: PSS of its processes`, reason)
    }
    if (ids.length) {
      record(`density.${kind}.host_mib`, { what: `memory per ${label}: host MemAvailable drop / n`,
        unit: 'MiB', value: per((before - after) / ids.length), n: ids.length })
    } else {
      skip(`density.${kind}.host_mib`, `memory per ${label}: host MemAvailable drop / n`, 'no sandbox was created')
    }
  })
}

async function roundtripRows() {
  console.error('round trips')
  await withDaemon(['base=0', 'code-interpreter-v1=0'], async () => {
    const code = await CodeSandbox.create({ timeoutMs: 600000 })
    try {
      for (let i = 0; i < 10; ++i) await code.runCode('1+1')
      const runcode = []
      const command = []
      for (let i = 0; i < counts.roundtrip; ++i) {
        let start = now()
        const execution = await code.runCode('1+1')
        runcode.push(now() - start)
        if (execution.text !== '2') throw new Error(`1+1 gave ${execution.text}`)
        start = now()
        const result = await code.commands.run('true')
        command.push(now() - start)
        if (result.exitCode !== 0) throw new Error(`true exited ${result.exitCode}`)
      }
      recordSamples('roundtrip.runcode.sdk', "SDK runCode('1+1') on a running sandbox", runcode)
      recordSamples('roundtrip.command.sdk', "SDK commands.run('true') on a running sandbox", command)
    } finally {
      await code.kill()
    }
  })
  const direct = python(['roundtrip', String(counts.roundtrip)])
  if (direct.error) skip('roundtrip.runcode.jupyter_client', 'jupyter_client execute 1+1, direct', direct.error)
  else recordSamples('roundtrip.runcode.jupyter_client', 'jupyter_client execute 1+1, direct', direct.samples)
  recordSamples('roundtrip.command.forkexec', 'fork/exec /bin/true + wait, direct',
    await timeConcurrent(1, counts.roundtrip, () => ['/bin/true', []]))
}

function filesRow() {
  const script = join(repo, 'bench/files.mjs')
  const what = 'file upload/download vs cp'
  if (!existsSync(script)) {
    skip('files', what, 'bench/files.mjs not present')
    return
  }
  if (options.quick) {
    // It starts its own daemon and moves real data: full mode only, so that the CI smoke
    // stays short.
    skip('files', what, 'full mode only (bench/run without --quick)')
    return
  }
  console.error('files (bench/files.mjs)')
  // 1 GiB; the SDK's gzip download row is left out (it runs at under 1 MiB/s today:
  // docs/benchmarks.md), or a full run would take half an hour.
  const args = ['1024', '--no-sdk-gzip']
  const result = spawnSync(process.execPath, [script, ...args],
    { stdio: ['ignore', 'inherit', 'inherit'], env: process.env })
  if (result.status !== 0) skip('files', what, `bench/files.mjs exited ${result.status}`)
  else record('files', { what: `${what} (its table is printed above)`, unit: '', value: 'ran' })
}

// ---------------------------------------------------------------- ratios and output

function addRatios() {
  const ratio = (a, b) => (a && b ? +(a / b).toFixed(2) : undefined)
  for (const c of CONCURRENCY) {
    const bwrap = rows.get(`peer.bwrap.c${c}`)
    for (const pool of ['nopool', 'pool']) {
      const row = rows.get(`create.c${c}.${pool}`)
      if (row && !row.skipped && bwrap && !bwrap.skipped) {
        row.peer = bwrap.what
        row.ratio = ratio(row.p50, bwrap.p50)
        row.ratios = Object.fromEntries(CREATE_PEERS.map((p) => [p.key, ratio(row.p50, rows.get(`peer.${p.key}.c${c}`)?.p50)]))
      }
    }
    const ours = rows.get(`create.c${c}.nopool`)
    for (const peer of CREATE_PEERS) {
      const row = rows.get(`peer.${peer.key}.c${c}`)
      if (row && !row.skipped && ours && !ours.skipped) {
        row.peer = ours.what
        row.ratio = ratio(ours.p50, row.p50)
      }
    }
  }
  const pair = (ours, theirs) => {
    const a = rows.get(ours)
    const b = rows.get(theirs)
    if (!a || !b || a.skipped || b.skipped) return
    a.peer = b.what
    a.ratio = a.p50 !== undefined ? ratio(a.p50, b.p50) : ratio(b.value, a.value)
  }
  pair('sdk.first_runcode.nopool', 'peer.jupyter_cold')
  pair('sdk.first_runcode.pool', 'peer.jupyter_cold')
  pair('sdk.first_command.nopool', 'peer.bwrap.c1')
  pair('sdk.first_command.pool', 'peer.bwrap.c1')
  pair('sustained.isobox', 'sustained.bwrap')
  pair('roundtrip.runcode.sdk', 'roundtrip.runcode.jupyter_client')
  pair('roundtrip.command.sdk', 'roundtrip.command.forkexec')
  pair('net.download.direct', 'net.download.host')
  pair('net.download.proxy', 'net.download.host')
}

function table() {
  const fmt = (x) => (x === undefined ? ''
    : typeof x !== 'number' ? String(x) : Number.isInteger(x) ? String(x) : x.toFixed(2))
  const lines = ['| what | n | p50 | p99 (or value) | peer | ratio |',
    '| --- | ---: | ---: | ---: | --- | ---: |']
  for (const id of rowIds()) {
    const r = rows.get(id)
    if (!r) { lines.push(`| ${id} | | | missing | | |`); continue }
    if (r.skipped) { lines.push(`| ${r.what} | | | skipped: ${r.skipped} | | |`); continue }
    const p50 = r.p50 !== undefined ? `${fmt(r.p50)} ms` : ''
    const p99 = r.p99 !== undefined ? `${fmt(r.p99)} ms` : `${fmt(r.value)} ${r.unit}`
    lines.push(`| ${r.what} | ${r.n ?? ''} | ${p50} | ${p99} | ${r.peer ?? ''} | ${r.ratio !== undefined ? `${fmt(r.ratio)}x` : ''} |`)
  }
  return lines.join('\n')
}

function machine() {
  const os = readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)/m)?.[1]
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  return { cpus: cpus().length, cpu: cpus()[0]?.model, memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    kernel: release(), os, loadavgAtStart: load }
}

const started = new Date()
const info = machine()
console.error(`bench/run ${options.quick ? '--quick' : '(full)'}: isoboxd ${process.env.ISOBOXD}`)
console.error(`machine: ${info.cpus} x ${info.cpu}, ${info.memoryGiB} GiB, Linux ${info.kernel}, load ${info.loadavgAtStart}`)

const phases = {
  create: createRows,
  peers: peerRows,
  sdk: sdkFirstRows,
  sustained: sustainedRows,
  density: async () => {
    await densityRows('base', 'base', counts.density)
    await densityRows('ci', 'code-interpreter-v1', counts.densityCi)
  },
  roundtrip: roundtripRows,
  network: () => downloadRows({ withDaemon, record, skip, Sandbox, repo,
    mib: counts.downloadMiB, runs: counts.downloads, warmup: counts.warmup > 0 }),
  templates: () => templateRows({ repo, quick: options.quick, warmup: counts.warmup,
    daemonArgs: DAEMON_ARGS, record, summary }),
  pause: () => pauseRows({ repo, quick: options.quick, daemonArgs: DAEMON_ARGS, record, summary }),
  files: filesRow,
}
let failed = null
for (const name of options.only ?? Object.keys(phases)) {
  const phase = phases[name]
  if (!phase) {
    console.error(`bench/run: --only: unknown part '${name}' (${Object.keys(phases).join(', ')})`)
    process.exit(2)
  }
  try {
    await phase()
  } catch (error) {
    failed = error
    console.error(`bench/run: ${error.stack ?? error}`)
    break
  }
}
addRatios()
const doc = {
  date: started.toISOString(), mode: options.quick ? 'quick' : 'full', isoboxd: process.env.ISOBOXD,
  machine: info, loadavgAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  seconds: +((Date.now() - started.getTime()) / 1000).toFixed(1),
  error: failed ? String(failed.message ?? failed) : undefined,
  rows: rowIds().filter((id) => rows.has(id)).map((id) => rows.get(id)),
}
mkdirSync(dirname(options.json), { recursive: true })
writeFileSync(options.json, JSON.stringify(doc, null, 2) + '\n')
console.log(table())
console.log(`\n${doc.mode} run, ${doc.seconds} s, JSON: ${options.json}`)
process.exit(failed ? 1 : 0)
