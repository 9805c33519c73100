#!/usr/bin/env node
// Large files through isoboxd and the sandbox's envd: a 1 GiB upload and download with the
// unmodified e2b SDK, next to `cp` of the same file on the same disk, with the peak RSS of
// isoboxd and of the sandbox's isobox-envd during each transfer.
//
//   ISOBOXD=build/release/bin/isoboxd node bench/files.mjs [MiB, default 1024] [--no-sdk-gzip]
//
// --no-sdk-gzip leaves out the SDK download row (envd compresses on the fly, so it is
// slower than the others; see docs/benchmarks.md).
//
// Needs root (it starts its own isoboxd, state under $TMPDIR). The base template's disk is
// 1 GiB, too small for a 1 GiB file plus ext4's own overhead, so this isoboxd runs with
// --disk-mb (size + 1 GiB). The data is random, so gzip cannot shrink it (worst case for
// the SDK's default download, which asks for gzip: undici sends Accept-Encoding: gzip).
//
// Rows:
//   upload (SDK)          files.write(path, ReadableStream): octet-stream, streamed
//   download (SDK)        files.read(path, {format: 'stream'}), gzip negotiated by undici
//   download (identity)   fetch of /files with the SDK's headers and Accept-Encoding: identity
//   cp                    cp of the source file to another file on the same disk
// Peak RSS: VmHWM after the transfer minus VmRSS before it; /proc/<pid>/clear_refs (5)
// resets the high-water mark before each transfer.
import { spawn, spawnSync } from 'node:child_process'
import { createReadStream, createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync,
  rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs'
import { randomBytes, createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

const args = process.argv.slice(2)
const sdkGzip = !args.includes('--no-sdk-gzip')
const mib = Number(args.find((a) => /^\d+$/.test(a)) ?? 1024)
const size = mib * 1024 * 1024
const here = dirname(fileURLToPath(import.meta.url))
const sdkPath = join(here, '..', 'tests', 'e2e', 'js', 'node_modules', 'e2b', 'dist', 'index.mjs')
const { Sandbox } = await import(pathToFileURL(sdkPath))
const API_KEY = 'e2b_' + '0123456789abcdef'.repeat(2) + '01234567'

function status(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key) => Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'))[1])
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

function resetPeak(pid) { writeFileSync(`/proc/${pid}/clear_refs`, '5') }

// The isobox-envd process below our isoboxd (other daemons may run on the machine).
function findEnvd(daemonPid) {
  const parent = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      parent.set(Number(name), { ppid: Number(fields[1]), comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) })
    } catch { /* gone */ }
  }
  for (const [pid, info] of parent) {
    if (!info.comm.startsWith('isobox-envd')) continue
    for (let p = info.ppid; p > 1; p = parent.get(p)?.ppid ?? 0) {
      if (p === daemonPid) return pid
    }
  }
  throw new Error('no isobox-envd below our isoboxd')
}

async function measure(label, pids, fn) {
  console.error(`${label}...`)
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => {
    resetPeak(pid)
    return [k, status(pid).rss]
  }))
  const start = process.hrtime.bigint()
  await fn()
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  const extra = Object.fromEntries(Object.entries(pids).map(([k, pid]) =>
    [k, (status(pid).hwm - before[k]) / 1024]))
  return { label, seconds, mibps: mib / seconds, extra }
}

async function sha256File(path) {
  const hash = createHash('sha256')
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash)
  return hash.digest('hex')
}

const dir = mkdtempSync(join(tmpdir(), 'isobox-bench-files-'))
const source = join(dir, 'source.bin')
{
  const fd = openSync(source, 'w')
  const block = randomBytes(1 << 20)
  for (let i = 0; i < mib; ++i) { block[0] = i & 0xff; writeSync(fd, block) }
  closeSync(fd)
}
const sourceHash = await sha256File(source)

const portFile = join(dir, 'port')
const daemon = spawn(process.env.ISOBOXD, ['--state-dir', join(dir, 'state'), '--port', '0',
  '--port-file', portFile, '--api-key', API_KEY, '--log-level', 'warn',
  '--disk-mb', String(mib + 1024)], { stdio: ['ignore', 'inherit', 'inherit'] })
const deadline = Date.now() + 30000
while (!existsSync(portFile) || readFileSync(portFile, 'utf8').trim() === '') {
  if (Date.now() > deadline) throw new Error('isoboxd did not start')
  await sleep(20)
}
const url = `http://127.0.0.1:${readFileSync(portFile, 'utf8').trim()}`
process.env.E2B_API_URL = url
process.env.E2B_SANDBOX_URL = url
process.env.E2B_API_KEY = API_KEY

const rows = []
let sandbox
try {
  sandbox = await Sandbox.create({ timeoutMs: 3600_000 })
  const pids = { isoboxd: daemon.pid, envd: findEnvd(daemon.pid) }
  const opts = { requestTimeoutMs: 0 }

  rows.push(await measure('upload (SDK, octet-stream)', pids, async () => {
    const body = Readable.toWeb(createReadStream(source, { highWaterMark: 1 << 20 }))
    await sandbox.files.write('big.bin', body, opts)
  }))
  const { stdout } = await sandbox.commands.run('stat -c %s big.bin && sha256sum big.bin', { timeoutMs: 0 })
  const [remoteSize, remoteHash] = stdout.split(/\s+/)
  if (Number(remoteSize) !== size || remoteHash !== sourceHash) throw new Error('upload corrupted')

  const target = join(dir, 'download.bin')
  if (sdkGzip) {
    rows.push(await measure('download (SDK stream, gzip)', pids, async () => {
      const stream = await sandbox.files.read('big.bin', { format: 'stream', ...opts })
      await pipeline(Readable.fromWeb(stream), createWriteStream(target))
    }))
    if (statSync(target).size !== size || await sha256File(target) !== sourceHash) throw new Error('download corrupted')
    rmSync(target)
  }

  rows.push(await measure('download (identity)', pids, async () => {
    const res = await fetch(`${url}/files?path=big.bin`, {
      headers: { 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': '49983',
        'X-Access-Token': sandbox.envdAccessToken, 'Accept-Encoding': 'identity' },
    })
    await pipeline(Readable.fromWeb(res.body), createWriteStream(target))
  }))
  if (statSync(target).size !== size || await sha256File(target) !== sourceHash) throw new Error('download corrupted')
  rmSync(target)

  rows.push(await measure('cp (same disk)', {}, async () => {
    const result = spawnSync('cp', [source, target])
    if (result.status !== 0) throw new Error('cp failed')
  }))
} finally {
  await sandbox?.kill().catch(() => {})
  daemon.kill('SIGTERM')
  await new Promise((resolve) => daemon.once('exit', resolve))
  rmSync(dir, { recursive: true, force: true })
}

const fmt = (x) => (x === undefined ? '-' : x.toFixed(1))
console.log(`\n${mib} MiB of random data\n`)
console.log('| transfer | seconds | MiB/s | isoboxd peak RSS extra (MiB) | envd peak RSS extra (MiB) |')
console.log('| --- | ---: | ---: | ---: | ---: |')
for (const row of rows) {
  console.log(`| ${row.label} | ${row.seconds.toFixed(2)} | ${fmt(row.mibps)} | ${fmt(row.extra.isoboxd)} | ${fmt(row.extra.envd)} |`)
}
