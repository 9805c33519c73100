#!/usr/bin/env node
// Sandbox create -> envd healthy (POST /sandboxes answers 201 only once the agent answers
// /health), against bwrap and crun running /bin/true, on the same machine in the same run.
//
//   ISOBOXD=build/release/bin/isoboxd node bench/create.mjs [runs]
//
// Needs root, bubblewrap and crun (scripts/install). crun runs in a private mount
// namespace with /sys/fs/cgroup/unified unmounted (it picks the wrong cgroup manager on
// hosts with the hybrid layout otherwise). Each runtime runs `runs` times (default 30) after
// 3 warm-up runs; the table shows min, median and p90 in milliseconds.
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { BWRAP, ociBundle } from './lib/peers.mjs'

const runs = Number(process.argv[2] ?? 30)
const here = dirname(fileURLToPath(import.meta.url))

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b)
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))]
  return { min: s[0], median: at(0.5), p90: at(0.9) }
}

function timeIt(fn) {
  for (let i = 0; i < 3; ++i) fn()
  const samples = []
  for (let i = 0; i < runs; ++i) {
    const start = process.hrtime.bigint()
    fn()
    samples.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  return stats(samples)
}

function mustRun(cmd, args) {
  const result = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  if (result.status !== 0) throw new Error(`${cmd} failed: ${result.stderr}`)
}

async function isobox() {
  const { startDaemon } = await import(pathToFileURL(join(here, '../tests/e2e/js/harness.js')).href)
  const daemon = await startDaemon()
  const headers = { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' }
  const samples = []
  try {
    for (let i = 0; i < runs + 3; ++i) {
      const start = process.hrtime.bigint()
      const response = await fetch(`${daemon.url}/sandboxes`, {
        method: 'POST', headers, body: JSON.stringify({ templateID: 'base' }),
      })
      const ms = Number(process.hrtime.bigint() - start) / 1e6
      if (response.status !== 201) throw new Error(`create: ${response.status}`)
      const { sandboxID } = await response.json()
      await fetch(`${daemon.url}/sandboxes/${sandboxID}`, { method: 'DELETE', headers })
      if (i >= 3) samples.push(ms)
    }
  } finally {
    await daemon.stop()
  }
  return stats(samples)
}

if (process.argv[3] === '--crun-inner') {
  const bundle = ociBundle('crun')
  let n = 0
  const result = timeIt(() => mustRun('crun', ['run', '--bundle', bundle, `isobox-bench-${process.pid}-${n++}`]))
  rmSync(bundle, { recursive: true, force: true })
  process.stdout.write(JSON.stringify(result))
  process.exit(0)
}

const rows = []
rows.push(['isobox create -> envd healthy (base)', await isobox()])
rows.push(['bwrap --unshare-all ... /bin/true', timeIt(() => mustRun('bwrap', BWRAP))])
const crun = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
  `umount /sys/fs/cgroup/unified 2>/dev/null; exec "${process.execPath}" "${fileURLToPath(import.meta.url)}" ${runs} --crun-inner`],
{ encoding: 'utf8' })
if (crun.status !== 0) throw new Error(`crun: ${crun.stderr}`)
rows.push(['crun run /bin/true', JSON.parse(crun.stdout)])

const fmt = (ms) => ms.toFixed(1).padStart(8)
console.log(`runs: ${runs} each (after 3 warm-up runs), milliseconds`)
console.log(`| what | min | median | p90 |\n| --- | ---: | ---: | ---: |`)
for (const [name, s] of rows) console.log(`| ${name} | ${fmt(s.min)} | ${fmt(s.median)} | ${fmt(s.p90)} |`)
