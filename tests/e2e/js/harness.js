// Starts a real isoboxd on 127.0.0.1 with a free port and a private state directory, and
// points the official E2B SDK at it through its documented environment variables.
import { execFile, execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

const API_KEY = 'e2b_' + '0123456789abcdef'.repeat(2) + '01234567'

async function readPortFile(path, child, deadline) {
  while (!existsSync(path) || readFileSync(path, 'utf8').trim() === '') {
    if (child.exitCode !== null) throw new Error(`isoboxd exited with ${child.exitCode}`)
    if (Date.now() > deadline) throw new Error('isoboxd did not start listening')
    await sleep(20)
  }
  return Number(readFileSync(path, 'utf8').trim())
}

// Whether `binary` has --disk-pool-mb (bench/ab.mjs runs builds from before it too).
const diskPoolFlag = new Map()
function knowsDiskPool(binary) {
  if (!diskPoolFlag.has(binary)) {
    diskPoolFlag.set(binary, execFileSync(binary, ['--help'], { encoding: 'utf8' })
      .includes('--disk-pool-mb'))
  }
  return diskPoolFlag.get(binary)
}

// Whether `binary` gives sandboxes a network (--sandbox-cidr; bench/ab.mjs runs older
// builds too).
const networkFlag = new Map()
function knowsNetwork(binary) {
  if (!networkFlag.has(binary)) {
    networkFlag.set(binary, execFileSync(binary, ['--help'], { encoding: 'utf8' })
      .includes('--sandbox-cidr'))
  }
  return networkFlag.get(binary)
}

// A /22 of 10.128.0.0/9 for one test daemon's sandboxes: daemons on one host need
// disjoint blocks, and tests run several at once.
export function testSandboxCidr() {
  const second = 128 + Math.floor(Math.random() * 128)
  const third = Math.floor(Math.random() * 64) * 4
  return `10.${second}.${third}.0/22`
}

// options.args: extra isoboxd flags; options.tls: {cert, key} for a TLS listener too;
// options.wrapper: argv that execs the daemon (prlimit ... --);
// options.dir: reuse this directory (its state/ is the daemon's state directory), as a
// restarted daemon does. Sandboxes are killed when the daemon stops (--on-exit kill)
// unless options.onExit is 'keep'. Warm pools are empty unless options.pools lists
// TEMPLATE=SIZE entries. options.apiKey: the --api-key to pass (default: a fixed test
// key; null: none, as an operator starts it); options.env: extra environment variables.
// The sandboxes' disk pool is 4 GiB unless options.args names --disk-pool-mb.
export async function startDaemon(options = {}) {
  const binary = process.env.ISOBOXD
  if (!binary) throw new Error('ISOBOXD must name the isoboxd binary to test')
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'isobox-e2e-'))
  const stateDir = join(dir, 'state')
  const portFile = join(dir, 'port')
  const tlsPortFile = join(dir, 'tls-port')
  rmSync(portFile, { force: true })
  rmSync(tlsPortFile, { force: true })
  const tls = options.tls
  const tlsArgs = tls
    ? ['--tls-cert', tls.cert, '--tls-key', tls.key, '--tls-port', '0',
        '--tls-port-file', tlsPortFile]
    : []
  const apiKey = options.apiKey === undefined ? API_KEY : options.apiKey
  // A disk pool of 4 GiB unless the test gives one: the default (a quarter of the free
  // space) taken by every test daemon at once would crowd the host.
  const poolArgs = (options.args ?? []).includes('--disk-pool-mb') || !knowsDiskPool(binary)
    ? [] : ['--disk-pool-mb', '4096']
  // A block of its own unless the test gives one (or turns networking off).
  const givenNet = (options.args ?? []).some((a) => a === '--sandbox-cidr' || a === '--no-network')
  // A restarted daemon (options.dir) keeps its block: its sandboxes keep their addresses.
  const cidrFile = join(dir, 'sandbox-cidr')
  if (!givenNet && !existsSync(cidrFile)) writeFileSync(cidrFile, testSandboxCidr())
  const netArgs = givenNet || !knowsNetwork(binary)
    ? [] : ['--sandbox-cidr', readFileSync(cidrFile, 'utf8').trim()]
  const args = ['--state-dir', stateDir, '--port', '0', '--port-file', portFile,
    ...(apiKey ? ['--api-key', apiKey] : []), '--log-level', options.logLevel ?? 'warn', '--on-exit', options.onExit ?? 'kill',
    ...(options.pools ?? ['base=0', 'code-interpreter-v1=0']).flatMap((p) => ['--pool', p]),
    ...tlsArgs, ...poolArgs, ...netArgs, ...(options.args ?? [])]
  // options.wrapper: a command that execs the daemon in its place (e.g. prlimit), so that
  // the pid stays the daemon's. options.env: more environment for the daemon.
  const wrapper = options.wrapper ?? []
  const spawnOptions = {
    stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...(options.env ?? {}) },
  }
  const child = wrapper.length > 0
    ? spawn(wrapper[0], [...wrapper.slice(1), binary, ...args], spawnOptions)
    : spawn(binary, args, spawnOptions)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const deadline = Date.now() + 30000
  const port = await readPortFile(portFile, child, deadline)
  const tlsPort = tls ? await readPortFile(tlsPortFile, child, deadline) : undefined
  const url = `http://127.0.0.1:${port}`
  process.env.E2B_API_URL = url
  process.env.E2B_SANDBOX_URL = url
  // The volume content API is served on the same port (README "Volumes").
  process.env.E2B_VOLUME_API_URL = url
  if (apiKey) process.env.E2B_API_KEY = apiKey
  return {
    url,
    tlsPort,
    stateDir,
    apiKey,
    dir,
    pid: child.pid,
    // SIGTERM, wait, and remove the state directory (unless keepDir).
    async stop({ keepDir = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
      if (!keepDir) rmSync(dir, { recursive: true, force: true })
    },
    // SIGKILL: the daemon gets no chance to clean up; the directory stays.
    async crash() {
      child.kill('SIGKILL')
      await exited
    },
  }
}

// A daemon with a TLS listener too, serving a certificate for isobox.test and
// *.isobox.test made by `isoboxd dev-cert` in a new directory. Returns the daemon, the CA
// certificate to trust and that directory (the caller removes it).
export async function startTlsDaemon(options = {}) {
  const certDir = mkdtempSync(join(tmpdir(), 'isobox-cert-'))
  await promisify(execFile)(process.env.ISOBOXD,
    ['dev-cert', '--domain', 'isobox.test', '--out', certDir])
  const ca = readFileSync(join(certDir, 'ca.pem'))
  const daemon = await startDaemon({
    ...options, tls: { cert: join(certDir, 'cert.pem'), key: join(certDir, 'key.pem') },
  })
  return { daemon, ca, certDir }
}

// The name of a sandbox's state directory (<state>/sandboxes/<name>) and cgroups
// (isobox/<name>): never its id, which other host users must not learn
// (src/server/control/ids.h, PrivateName).
export function privateName(id) {
  return createHash('sha256').update(id).digest('hex').slice(0, 32)
}

// Host pids of the sandbox's agent cgroup (its isobox-envd, PID 1 inside), which is named
// after a digest of the sandbox id, never the id (privateName).
export function agentPids(id) {
  const pids = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let cgroups
    try { cgroups = readFileSync(`/proc/${entry}/cgroup`, 'utf8') } catch { continue }
    if (cgroups.includes(`/isobox/${privateName(id)}/agent\n`)) pids.push(Number(entry))
  }
  return pids
}

// Polls `predicate` until it returns a truthy value (returned) or `timeoutMs` passes.
export async function until(what, predicate, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

// A request to a sandbox's code interpreter (port 49999) without the SDK, for what the SDK
// hides: raw NDJSON lines and the statuses it checks before sending.
export async function interpreterFetch(sandbox, path, init = {}) {
  return fetch(`${process.env.E2B_SANDBOX_URL}${path}`, {
    ...init,
    headers: {
      'Content-Type': 'application/json',
      'E2b-Sandbox-Id': sandbox.sandboxId,
      'E2b-Sandbox-Port': '49999',
      ...(sandbox.envdAccessToken ? { 'X-Access-Token': sandbox.envdAccessToken } : {}),
      ...(init.headers ?? {}),
    },
  })
}

// POST /execute with `body`; the NDJSON lines parsed.
export async function executeLines(sandbox, body) {
  const response = await interpreterFetch(sandbox, '/execute', {
    method: 'POST', body: JSON.stringify(body),
  })
  if (response.status !== 200) throw new Error(`${response.status}: ${await response.text()}`)
  const text = await response.text()
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line))
}
