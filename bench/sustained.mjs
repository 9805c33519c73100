#!/usr/bin/env node
// Create + kill loop with N callers for S seconds, with where the time goes: the rate, the
// CPU's busy/user/sys/iowait share over the loop (from /proc/stat), the busy CPU per pair
// split into isoboxd's own, its reaped children's and this client's, the host disk writes
// per pair, and the p50 of create and of kill as each caller sees them. A probe for the
// fast path; bench/run's `sustained` row is the published number (with bwrap beside it).
// Arguments after the pool size go to isoboxd (e.g. `--disk-mb 0`).
//
//   ISOBOXD=build/release/bin/isoboxd node bench/sustained.mjs [seconds=10] [callers=4] [pool=0] [isoboxd flags...]
import { readFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const { startDaemon } = await import(pathToFileURL(join(here, '../tests/e2e/js/harness.js')).href)
const { costPer, costSnapshot } = await import(pathToFileURL(join(here, 'lib/proc.mjs')).href)
const seconds = Number(process.argv[2] ?? 10)
const callers = Number(process.argv[3] ?? 4)
const pool = Number(process.argv[4] ?? 0)
const extraArgs = process.argv.slice(5)

const daemon = await startDaemon({ pools: [`base=${pool}`, 'code-interpreter-v1=0'],
  args: ['--uid-base', String(0x76000000), '--max-sandboxes', '512', ...extraArgs] })
const headers = { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' }
const cpu = () => readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1, 9).map(Number)
const median = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]?.toFixed(2)
try {
  await new Promise((resolve) => setTimeout(resolve, 1500))  // spares and pool made
  const before = cpu()
  const costBefore = costSnapshot(daemon.pid)
  const start = performance.now()
  const end = Date.now() + seconds * 1000
  const creates = []
  const kills = []
  let done = 0
  let errors = 0
  let firstError
  await Promise.all(Array.from({ length: callers }, async () => {
    while (Date.now() < end) {
      try {
        let t = performance.now()
        const created = await fetch(`${daemon.url}/sandboxes`, { method: 'POST', headers,
          body: JSON.stringify({ templateID: 'base', timeout: 600 }) })
        const text = await created.text()
        if (created.status !== 201) throw new Error(`create: ${created.status} ${text}`)
        creates.push(performance.now() - t)
        t = performance.now()
        const killed = await fetch(`${daemon.url}/sandboxes/${JSON.parse(text).sandboxID}`,
          { method: 'DELETE', headers })
        await killed.arrayBuffer()
        if (killed.status !== 204) throw new Error(`kill: ${killed.status}`)
        kills.push(performance.now() - t)
        ++done
      } catch (error) {
        ++errors
        firstError ??= error.message
      }
    }
  }))
  const elapsed = (performance.now() - start) / 1000
  const cost = costPer(costBefore, costSnapshot(daemon.pid), done)
  const delta = cpu().map((value, i) => value - before[i])
  const total = delta.reduce((a, b) => a + b, 0)
  const share = (ticks) => (100 * ticks / total).toFixed(1)
  console.log(`${callers} callers, ${seconds} s, pool ${pool}: ${(done / elapsed).toFixed(1)} ` +
    `create+kill/s (n=${done}, errors=${errors}${firstError ? `, first: ${firstError}` : ''})`)
  console.log(`cpu busy ${share(total - delta[3] - delta[4])}%, user ${share(delta[0])}%, ` +
    `sys ${share(delta[2])}%, iowait ${share(delta[4])}%; ` +
    `${((total - delta[3] - delta[4]) * 10 / Math.max(done, 1)).toFixed(1)} ms busy CPU per pair`)
  console.log(`per pair: isoboxd ${cost.daemonMs} ms, its children ${cost.daemonChildrenMs} ms, ` +
    `client ${cost.clientMs} ms, host disk writes ${cost.hostWritesKiB} KiB`)
  console.log(`create p50 ${median(creates)} ms, kill p50 ${median(kills)} ms`)
} finally {
  await daemon.stop()
}
