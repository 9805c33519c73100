// bench/run's download rows: a sandbox's download throughput over its link, directly
// (forwarded and masqueraded by the kernel) and through isoboxd's egress proxy, against the
// same download from the host. The upstream is the end-to-end tests' fake internet
// (tests/e2e/js/helpers/fakenet.js): a network namespace of its own holding TEST-NET hosts,
// reached through a veth and host routes, so no packet leaves the machine. Its HTTP server
// answers `GET /bytes/<n>` with n bytes.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { processCpuMs } from './proc.mjs'

const MIB = 1024 * 1024
const UPSTREAM = '198.51.100.10'
// The proxied sandbox has E2B's allow-list shape, `allowOut: [name], denyOut: [0.0.0.0/0]`:
// its new TCP 80/443 connections that its address rules deny are redirected to the egress
// proxy, which judges the HTTP Host, resolves the name itself (the fake internet's DNS)
// and connects from the host. It fetches by name: a Host that is an address is judged as
// that address, which 0.0.0.0/0 denies. (With names in allowOut only and nothing denied,
// no connection is redirected: every destination is allowed by address.)
const ALLOWED_NAME = 'bench.example.test'

export const DOWNLOAD_ROWS = ['net.download.host', 'net.download.direct', 'net.download.proxy']

// curl's own figures: bytes received and seconds from its start to the last byte.
const CURL_OPTIONS = ['-sS', '-f', '-m', '600', '-o', '/dev/null']
const WRITE_OUT = '%{size_download} %{time_total}'
const url = (bytes, host = UPSTREAM) => `http://${host}/bytes/${bytes}`

function parseCurl(out, bytes, where) {
  const [size, seconds] = out.trim().split(' ').map(Number)
  if (size !== bytes || !(seconds > 0)) {
    throw new Error(`${where}: curl received ${size} of ${bytes} bytes in ${seconds} s (${out.trim()})`)
  }
  return seconds
}

// The processes that carry a download on the host, the host's curl, isoboxd (the proxy)
// and the upstream's server, each run in a CPU cgroup of its own at the default weight, as
// each sandbox does (isoboxd's groups): otherwise, on a busy machine, they would get a
// share set by their niceness among every other process while a sandbox's curl gets its
// group's weight, and the ratios would measure the scheduler. Null where there is no CPU
// controller to use.
function cpuGroup(role) {
  const root = existsSync('/sys/fs/cgroup/cpu/tasks') ? '/sys/fs/cgroup/cpu'
    : existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : null
  if (!root) return null
  const dir = join(root, `isobox-bench-${role}-${process.pid}`)
  try {
    mkdirSync(dir, { recursive: true })
    return dir
  } catch (error) {
    console.error(`  (no CPU cgroup for the ${role}: ${error.message})`)
    return null
  }
}

// Moves a running process (all its threads) into `group`.
function joinGroup(group, pid) {
  if (group) writeFileSync(join(group, 'cgroup.procs'), String(pid))
}

// Removes `group` once its processes have gone (a stopped isoboxd's zygotes may take a
// moment); one still busy after 5 s is left, with a warning.
async function removeGroup(group) {
  if (!group) return
  for (let i = 0; ; ++i) {
    try {
      rmdirSync(group)
      return
    } catch (error) {
      if (error.code === 'ENOENT') return
      if (i >= 50) {
        console.error(`  (left ${group}: ${error.message})`)
        return
      }
      await sleep(100)
    }
  }
}

function hostCurl(bytes, group) {
  return new Promise((resolve, reject) => {
    const args = [...CURL_OPTIONS, '-w', WRITE_OUT, url(bytes)]
    const child = group
      ? spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec curl "$@"', group, ...args],
        { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { if (err.length < 2000) err += d })
    child.on('error', reject)
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`host: curl exited ${code}: ${err.trim()}`))
      else {
        try { resolve(parseCurl(out, bytes, 'host')) } catch (error) { reject(error) }
      }
    })
  })
}

async function sandboxCurl(sandbox, bytes, where, host) {
  const command = `curl ${CURL_OPTIONS.join(' ')} -w '${WRITE_OUT}' ${url(bytes, host)}`
  const result = await sandbox.commands.run(command, { timeoutMs: 660000 }).catch((error) => {
    throw new Error(`${where}: ${error.message}${error.stderr ? `: ${error.stderr.trim()}` : ''}`)
  })
  return parseCurl(result.stdout, bytes, where)
}

// The proxied sandbox's downloads must pass the proxy, or its row would time the direct
// path again: the upstream by address is denied there, and a denied HTTP request gets the
// proxy's 403 (the upstream itself answers 200; a packet the firewall rejects, no answer).
async function checkProxied(sandbox) {
  const probe = await sandbox.commands.run(
    `curl -s -m 10 -o /dev/null -w '%{http_code}' http://${UPSTREAM}/`).catch((error) => error)
  if (probe.stdout?.trim() !== '403') {
    throw new Error(`its port 80 did not reach the egress proxy: http://${UPSTREAM}/ answered ` +
      `'${probe.stdout?.trim()}' (exit ${probe.exitCode}), not the proxy's 403`)
  }
}

function median(values) {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

// ctx: { withDaemon, record, skip, Sandbox, repo, mib, runs, warmup }. Each round downloads
// `mib` MiB on every path, in an order that rotates with the round (the machine's speed
// drifts); with `warmup`, a first round of 1 MiB each is not counted. Each row's value is
// the median rate.
export async function downloadRows(ctx) {
  const { withDaemon, record, skip, Sandbox, repo, mib, runs, warmup } = ctx
  const bytes = mib * MIB
  const groups = { curl: cpuGroup('curl'), daemon: cpuGroup('isoboxd'), upstream: cpuGroup('upstream') }
  const what = {
    'net.download.host': `download ${mib} MiB from the fake upstream, host curl` +
      `${groups.curl ? ' (own CPU cgroup)' : ''}`,
    'net.download.direct': `download ${mib} MiB, sandbox curl, direct (kernel forward + NAT)`,
    'net.download.proxy': `download ${mib} MiB, sandbox curl through the egress proxy ` +
      `(allowOut [name], denyOut [0.0.0.0/0]; fetched by name)`,
  }
  const helper = join(repo, 'tests/e2e/js/helpers/fakenet.js')
  const { FakeNet } = await import(pathToFileURL(helper).href)
  console.error(`download ${mib} MiB x ${runs}: host, sandbox direct, sandbox through the proxy`)
  let fake
  try {
    try {
      fake = await FakeNet.start()
    } catch (error) {
      for (const id of DOWNLOAD_ROWS) skip(id, what[id], `the fake upstream did not start: ${error.message}`)
      return
    }
    await fake.setDns({ [ALLOWED_NAME]: UPSTREAM })
    // Its server: the processes in its namespace.
    for (const pid of execFileSync('ip', ['netns', 'pids', fake.netns], { encoding: 'utf8' })
      .split('\n').filter(Boolean)) {
      joinGroup(groups.upstream, pid)
    }
    await withDaemon(['base=0', 'code-interpreter-v1=0'], async (daemon) => {
      joinGroup(groups.daemon, daemon.pid)
      const direct = await Sandbox.create({ timeoutMs: 1800000 })
      const proxied = await Sandbox.create({ timeoutMs: 1800000,
        network: { allowOut: [ALLOWED_NAME], denyOut: ['0.0.0.0/0'] } })
      try {
        const paths = {
          'net.download.host': (n) => hostCurl(n, groups.curl),
          'net.download.direct': (n) => sandboxCurl(direct, n, 'sandbox direct'),
          'net.download.proxy': (n) => sandboxCurl(proxied, n, 'sandbox through the proxy',
            ALLOWED_NAME),
        }
        const failed = {}
        try {
          await checkProxied(proxied)
        } catch (error) {
          failed['net.download.proxy'] = error.message
        }
        const ids = DOWNLOAD_ROWS.filter((id) => !failed[id])
        const rates = Object.fromEntries(ids.map((id) => [id, []]))
        const cost = Object.fromEntries(ids.map((id) => [id, 0]))
        for (let round = warmup ? -1 : 0; round < runs; ++round) {
          for (let k = 0; k < ids.length; ++k) {
            const id = ids[(k + Math.max(round, 0)) % ids.length]
            if (failed[id]) continue
            const n = round < 0 ? MIB : bytes
            const daemonBefore = processCpuMs(daemon.pid).self
            try {
              const seconds = await paths[id](n)
              if (round < 0) continue
              rates[id].push(n / MIB / seconds)
              cost[id] += processCpuMs(daemon.pid).self - daemonBefore
            } catch (error) {
              failed[id] = error.message
            }
          }
        }
        const host = failed['net.download.host'] ? undefined : median(rates['net.download.host'])
        for (const id of DOWNLOAD_ROWS) {
          if (failed[id]) {
            skip(id, what[id], `failed: ${failed[id].slice(0, 300)}`)
            continue
          }
          const value = +median(rates[id]).toFixed(1)
          const total = rates[id].length * mib
          const perMib = (ms) => +(ms / total).toFixed(2)
          const ofHost = host && id !== 'net.download.host' ? +(value / host).toFixed(2) : undefined
          record(id, {
            what: `${what[id]}, median of ${rates[id].length}` +
              `${ofHost !== undefined ? `, ${ofHost}x the host's rate` : ''}` +
              `${id === 'net.download.host' ? '' : `, isoboxd CPU ${perMib(cost[id])} ms per MiB`}`,
            unit: 'MiB/s', value, n: rates[id].length,
            rates: rates[id].map((r) => +r.toFixed(1)), ofHost,
            isoboxdCpuMsPerMiB: perMib(cost[id]),
          })
        }
      } finally {
        await Promise.allSettled([direct.kill(), proxied.kill()])
      }
    }, ['--dns-server', fake.dnsServer])
  } finally {
    await fake?.stop()
    for (const group of Object.values(groups)) await removeGroup(group)
  }
}
