#!/usr/bin/env node
// A/B of isoboxd builds: sequential creates (no pool, template base) against fresh
// daemons of each build in turn, so that the machine's drift hits every build alike.
//
//   node bench/ab.mjs [rounds=5] [creates=80] DIR_A DIR_B [DIR...]
//
// Each DIR holds an isoboxd (and the isobox-envd and isobox-zygote beside it), e.g. a copy
// of build/release/bin made before and after a change. Every round starts one daemon per
// build (the order rotates from round to round), waits 1.5 s for its spares, runs
// `creates` create -> kill pairs one after the other and keeps the p50 of the creates
// (the kills are not timed). It prints each build's p50 per round and their median: a
// change is worth claiming only when its medians differ by more than the spread of the
// rounds. Needs root and the e2e SDKs (npm ci --prefix tests/e2e/js).
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const { startDaemon } = await import(pathToFileURL(join(here, '../tests/e2e/js/harness.js')).href)

const numbers = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number)
const dirs = process.argv.slice(2).filter((a) => !/^\d+$/.test(a))
const [rounds = 5, creates = 80] = numbers
if (dirs.length < 2) {
  console.error('usage: node bench/ab.mjs [rounds] [creates] DIR_A DIR_B [DIR...]')
  process.exit(2)
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function round(dir) {
  const binary = join(dir, 'isoboxd')
  process.env.ISOBOXD = binary  // the daemon startDaemon starts
  const daemon = await startDaemon({
    pools: ['base=0', 'code-interpreter-v1=0'],
    args: ['--uid-base', String(0x78000000), '--max-sandboxes', '512'],
  })
  try {
    const headers = { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' }
    await new Promise((resolve) => setTimeout(resolve, 1500))  // spares and spare disks
    const times = []
    for (let i = 0; i < creates; i++) {
      const start = performance.now()
      const created = await fetch(`${daemon.url}/sandboxes`, {
        method: 'POST', headers, body: JSON.stringify({ templateID: 'base' }),
      })
      const body = await created.json()
      if (created.status !== 201) throw new Error(`${binary}: create ${created.status} ${JSON.stringify(body)}`)
      times.push(performance.now() - start)
      const killed = await fetch(`${daemon.url}/sandboxes/${body.sandboxID}`, { method: 'DELETE', headers })
      await killed.arrayBuffer()
    }
    return median(times)
  } finally {
    await daemon.stop()
  }
}

const results = new Map(dirs.map((dir) => [dir, []]))
for (let r = 0; r < rounds; r++) {
  const order = dirs.slice(r % dirs.length).concat(dirs.slice(0, r % dirs.length))
  for (const dir of order) results.get(dir).push(await round(dir))
}
console.log(`create -> envd healthy p50 (ms), ${creates} sequential creates per round, no pool`)
for (const [dir, p50s] of results) {
  console.log(`${dir}: median ${median(p50s).toFixed(2)}  rounds ${p50s.map((v) => v.toFixed(2)).join(' ')}`)
}
