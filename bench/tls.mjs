#!/usr/bin/env node
// The cost of the TLS listener: the same requests through isoboxd's plain port and its TLS
// port, in the same run. A certificate from `isoboxd dev-cert`; the process re-executes
// itself with NODE_EXTRA_CA_CERTS so that the SDK trusts it.
//
//   ISOBOXD=build/release/bin/isoboxd node bench/tls.mjs [runs]
//
// Rows: GET /isobox/health on a kept-alive connection; the same on a new connection each
// time (TCP connect, plus the TLS handshake on the TLS port); commands.run('true') through
// the SDK (Connect server stream relayed to envd). Each row runs `runs` times (default 200
// for requests, a tenth of it for commands) after warm-up; milliseconds.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const runs = Number(process.argv[2] ?? 200)
const here = dirname(fileURLToPath(import.meta.url))

if (!process.env.ISOBOX_BENCH_CERTS) {
  const certs = mkdtempSync(join(tmpdir(), 'isobox-bench-tls-'))
  execFileSync(process.env.ISOBOXD, ['dev-cert', '--domain', 'isobox.test', '--out', certs])
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), String(runs)], {
    stdio: 'inherit',
    env: { ...process.env, ISOBOX_BENCH_CERTS: certs, NODE_EXTRA_CA_CERTS: join(certs, 'ca.pem') },
  })
  rmSync(certs, { recursive: true, force: true })
  process.exit(child.status ?? 1)
}

const certs = process.env.ISOBOX_BENCH_CERTS
const { startDaemon } = await import(pathToFileURL(join(here, '../tests/e2e/js/harness.js')).href)
const { Sandbox } = await import(pathToFileURL(join(here, '../tests/e2e/js/node_modules/e2b/dist/index.mjs')).href)

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b)
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))]
  return { min: s[0], median: at(0.5), p90: at(0.9) }
}

async function timeIt(n, fn) {
  for (let i = 0; i < Math.max(3, n / 10); ++i) await fn()
  const samples = []
  for (let i = 0; i < n; ++i) {
    const start = process.hrtime.bigint()
    await fn()
    samples.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  return stats(samples)
}

function get(module, agent, port) {
  return new Promise((resolve, reject) => {
    const req = module.get({ host: 'localhost', port, path: '/isobox/health', agent }, (res) => {
      res.resume()
      res.on('end', resolve)
    })
    req.on('error', reject)
  })
}

const daemon = await startDaemon({
  tls: { cert: join(certs, 'cert.pem'), key: join(certs, 'key.pem') },
})
const plainPort = Number(new URL(daemon.url).port)
const rows = []
try {
  const keep = { plain: new http.Agent({ keepAlive: true, maxSockets: 1 }),
    tls: new https.Agent({ keepAlive: true, maxSockets: 1 }) }
  rows.push(['health, kept-alive, http', await timeIt(runs, () => get(http, keep.plain, plainPort))])
  rows.push(['health, kept-alive, https', await timeIt(runs, () => get(https, keep.tls, daemon.tlsPort))])
  rows.push(['health, new connection, http', await timeIt(runs, () => get(http, false, plainPort))])
  rows.push(['health, new connection, https (handshake)',
    await timeIt(runs, () => get(https, false, daemon.tlsPort))])
  const commandRuns = Math.max(5, Math.round(runs / 10))
  for (const [name, url] of [['http', daemon.url], ['https', `https://localhost:${daemon.tlsPort}`]]) {
    const opts = { apiUrl: url, sandboxUrl: url }
    const sandbox = await Sandbox.create(opts)
    rows.push([`commands.run('true'), ${name}`,
      await timeIt(commandRuns, () => sandbox.commands.run('true'))])
    await sandbox.kill()
  }
} finally {
  await daemon.stop()
}

const fmt = (x) => x.toFixed(2)
console.log(`runs: ${runs} per request row, ${Math.max(5, Math.round(runs / 10))} per command row, milliseconds`)
console.log(`| what | min | median | p90 |\n| --- | ---: | ---: | ---: |`)
for (const [name, s] of rows) console.log(`| ${name} | ${fmt(s.min)} | ${fmt(s.median)} | ${fmt(s.p90)} |`)
