// A fake internet for the network tests, made of TEST-NET addresses only, so no test ever
// sends a packet to the real internet:
//
//   host ── veth (fknh<pid>, 203.0.113.253/30) ──── (fknp<pid>, 203.0.113.254/30) netns
//   host routes 198.51.100.0/24 and 203.0.113.0/24 via 203.0.113.254     isobox-fakenet-<pid>
//
// and inside that namespace (helpers/fakenet_server.js, a node process run through
// `ip netns exec`):
//   198.51.100.10 and 203.0.113.10   HTTP echo :80, TLS echo :443 (a certificate from a CA
//                                    made at start: `fake.caPath`), TCP and UDP echo :7
//   198.51.100.53                    DNS :53 (UDP and TCP): A records from `setDns`,
//                                    NXDOMAIN for every other name
//   203.0.113.20                     SOCKS5 :1080 (RFC 1928 CONNECT, RFC 1929 username and
//                                    password: `fake.socks`), relaying to the hosts above
// The echo servers answer JSON describing what they received: remote and local address,
// method, path, Host, SNI, ALPN, headers and body (GET /bytes/<n> answers n bytes instead).
// Everything they receive is also kept in a log (`fake.log()`).
//
//   const fake = await FakeNet.start()          // root only
//   await fake.setDns({ 'api.example.test': '198.51.100.10',
//                       'alias.example.test': { cname: 'api.example.test' },
//                       '*.wild.test': ['203.0.113.10'] })
//   fake.socks  // { address: '203.0.113.20', port: 1080, username, password } for egressProxy
//   await fake.setSocks({ enabled: false })     // the proxy is down: connections refused
//   await fake.setSocks({ enabled: true, mode: 'silent' })  // or 'http': not SOCKS5
//   ... isoboxd with `--upstream-ca ${fake.caPath}` ...
//   await fake.stop()                           // in after(): idempotent
//
// The host routes are global, so only one FakeNet exists at a time on the machine:
// start() waits for an exclusive flock(1) on /run/isobox-fakenet.lock, held by a `flock`
// child until stop() or until this process dies (its stdin pipe closes). ctest tests that
// use FakeNet carry RESOURCE_LOCK fakenet so that ctest does not run them side by side to
// time out on that lock. Whatever a crashed test left behind (a namespace named
// isobox-fakenet-*, a link named fknh*) is removed by the next start(), under the lock.
//
// Why not a 192.0.2.0/30 (TEST-NET-1) link: hosts and CI machines use TEST-NET-1 for
// their own lab networks (this project's CI host's eth0 is 192.0.2.2/24), and a /30 inside
// it would shadow real neighbours. The link takes the top /30 of TEST-NET-3 instead,
// which the fake internet owns anyway; start() refuses to run if the host already routes
// or holds any address of 198.51.100.0/24 or 203.0.113.0/24.
import { execFile, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import readline from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const here = dirname(fileURLToPath(import.meta.url))

export const LOCK_PATH = '/run/isobox-fakenet.lock'
export const NETNS_PREFIX = 'isobox-fakenet-'
const HOST_LINK_PATTERN = /^fknh\d+$/
const DIR_PREFIX = 'isobox-fakenet-'
// The web hosts (HTTP :80, TLS :443, echo :7) and the DNS server.
export const HOSTS = ['198.51.100.10', '203.0.113.10']
export const DNS_SERVER = '198.51.100.53'
// The SOCKS5 proxy (E2B's network.egressProxy); its credentials are per FakeNet.
export const SOCKS = { address: '203.0.113.20', port: 1080 }
export const ROUTED = ['198.51.100.0/24', '203.0.113.0/24']
// The host's and the fake internet's ends of the link. Traffic from the host itself (or
// NATed by it onto this link) reaches the servers from LINK.host.
export const LINK = { host: '203.0.113.253', fake: '203.0.113.254', prefix: 30 }
// The names the TLS certificate holds unless start({ tlsNames }) adds more; the two hosts'
// addresses are in it too.
export const TLS_NAMES = ['example.test', '*.example.test', 'other.test', '*.other.test']

const LOCK_TIMEOUT_SECONDS = 600
const READY_TIMEOUT_MS = 20000

function ipv4ToInt(text) {
  return text.split('.').reduce((value, octet) => value * 256 + Number(octet), 0)
}

function parseCidr(text) {
  const [address, prefix = '32'] = text.split('/')
  const size = 2 ** (32 - Number(prefix))
  const first = Math.floor(ipv4ToInt(address) / size) * size
  return { first, last: first + size - 1 }
}

function overlaps(a, b) {
  const x = parseCidr(a)
  const y = parseCidr(b)
  return x.first <= y.last && y.first <= x.last
}

function isIpv4(text) {
  const octets = typeof text === 'string' ? text.split('.') : []
  return octets.length === 4 && octets.every((o) => /^(0|[1-9]\d{0,2})$/.test(o) && Number(o) <= 255)
}

async function ip(args) {
  return (await run('ip', args)).stdout
}

// For cleanup: an `ip` command whose failure (already gone) does not matter.
async function ipQuietly(args) {
  try {
    await run('ip', args)
  } catch {}
}

async function linkExists(name) {
  try {
    await run('ip', ['link', 'show', 'dev', name])
    return true
  } catch {
    return false
  }
}

// Namespaces and host links left by a FakeNet whose process died. Only called under the
// lock: any FakeNet other than ours is stale then. Its server exited when its owner's pipe
// closed; its namespace, link (the link's routes go with it) and files are removed here.
async function removeStale() {
  for (const line of (await ip(['netns', 'list'])).split('\n')) {
    const name = line.split(' ')[0]
    if (name.startsWith(NETNS_PREFIX)) await ipQuietly(['netns', 'del', name])
  }
  for (const link of JSON.parse(await ip(['-j', 'link', 'show']))) {
    if (HOST_LINK_PATTERN.test(link.ifname)) await ipQuietly(['link', 'del', 'dev', link.ifname])
  }
  // Its certificates: a live FakeNet removes its directory before it releases the lock.
  for (const name of readdirSync(tmpdir())) {
    if (name.startsWith(DIR_PREFIX)) rmSync(join(tmpdir(), name), { recursive: true, force: true })
  }
}

// Refuses to shadow anything the host routes or holds in the fake internet's ranges.
async function checkRangesFree() {
  for (const route of JSON.parse(await ip(['-j', '-4', 'route', 'show', 'table', 'all']))) {
    if (!route.dst || route.dst === 'default' || route.type === 'broadcast') continue
    const dst = route.dst.includes('/') ? route.dst : `${route.dst}/32`
    const taken = ROUTED.find((cidr) => overlaps(cidr, dst))
    if (taken) {
      throw new Error(`the host routes ${route.dst} (dev ${route.dev}), inside the fake ` +
        `internet's ${taken}: FakeNet will not shadow it`)
    }
  }
}

function table(entries) {
  const normalized = {}
  for (const [name, value] of Object.entries(entries)) {
    const key = name.toLowerCase().replace(/\.$/, '')
    const ok = isIpv4(value) || (Array.isArray(value) && value.length > 0 && value.every(isIpv4)) ||
      (value && typeof value === 'object' && typeof value.cname === 'string')
    if (!ok) throw new Error(`setDns: ${name}: expected an IPv4 address, a list of them or {cname}`)
    normalized[key] = value
  }
  return normalized
}

// The SOCKS5 proxy's settings, checked: what setSocks and start({ socks }) accept.
function socksSettings(settings) {
  const { username = null, password = null, enabled = true, mode = 'socks5' } = settings
  const credential = (value) => typeof value === 'string' && value.length > 0 &&
    Buffer.byteLength(value) <= 255
  if (username !== null && (!credential(username) || !credential(password))) {
    throw new Error('setSocks: username and password are strings of 1 to 255 bytes')
  }
  if (typeof enabled !== 'boolean') throw new Error('setSocks: enabled is a boolean')
  if (!['socks5', 'silent', 'http'].includes(mode)) {
    throw new Error(`setSocks: mode is 'socks5', 'silent' or 'http', not ${mode}`)
  }
  return { ...SOCKS, username, password: username === null ? null : password, enabled, mode }
}

let running = null  // the FakeNet of this process, between start() and stop()

export class FakeNet {
  #server = null
  #lockHolder = null
  #pending = new Map()
  #nextId = 0
  #stopping = null
  #onExit = () => this.#cleanupSync()

  constructor() {
    this.netns = `${NETNS_PREFIX}${process.pid}`
    this.hostLink = `fknh${process.pid}`
    this.fakeLink = `fknp${process.pid}`
    this.hosts = HOSTS
    this.dnsServer = DNS_SERVER
    this.hostAddress = LINK.host
    this.dir = null
    this.caPath = null
    this.ca = null
    this.socks = null
  }

  // options.dns: the first DNS table; options.tlsNames: more names for the certificate;
  // options.socks: the proxy's { username, password } (default: 'fakenet' and a random
  // password; username null: no authentication) and { enabled, mode } (see setSocks).
  static async start(options = {}) {
    if (process.getuid?.() !== 0) throw new Error('FakeNet needs root (it makes a network namespace)')
    // A second one would wait for this process's own lock.
    if (running) throw new Error('a FakeNet is running in this process already: stop() it first')
    const fake = new FakeNet()
    running = fake
    try {
      await fake.#start(options)
    } catch (error) {
      await fake.stop()
      throw error
    }
    return fake
  }

  async #start(options) {
    await this.#lock()
    // From here on whatever exists is ours to remove, also if this process dies.
    process.once('exit', this.#onExit)
    await removeStale()
    await checkRangesFree()
    this.dir = mkdtempSync(join(tmpdir(), DIR_PREFIX))
    await this.#makeCertificates([...TLS_NAMES, ...(options.tlsNames ?? [])])
    await this.#makeNetwork()
    this.socks = socksSettings({ username: 'fakenet', password: randomBytes(12).toString('hex'),
      ...options.socks })
    await this.#startServers(table(options.dns ?? {}))
  }

  async #lock() {
    const holder = spawn('flock', ['--exclusive', '--timeout', String(LOCK_TIMEOUT_SECONDS),
      LOCK_PATH, 'sh', '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] })
    this.#lockHolder = holder
    await new Promise((resolve, reject) => {
      let out = ''
      holder.stdout.on('data', (data) => {
        out += data
        if (out.includes('locked')) resolve()
      })
      holder.once('error', reject)
      holder.once('exit', (code) => reject(new Error(
        `could not lock ${LOCK_PATH} within ${LOCK_TIMEOUT_SECONDS} s (flock exited ${code})`)))
    })
    // The holder must not keep this process alive; it ends with the process anyway.
    holder.unref()
    holder.stdin.unref?.()
    holder.stdout.unref?.()
  }

  async #makeCertificates(names) {
    const file = (name) => join(this.dir, name)
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    await run('openssl', ['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'),
      '-days', '2', '-subj', '/CN=Isobox FakeNet test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
    await run('openssl', ['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'),
      '-subj', '/CN=fakenet.test'])
    const sans = [...names.map((n) => `DNS:${n}`), ...HOSTS.map((a) => `IP:${a}`)].join(',')
    writeFileSync(file('server.ext'), 'basicConstraints=CA:FALSE\n' +
      'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' +
      `subjectAltName=${sans}\n`)
    await run('openssl', ['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'),
      '-CAkey', file('ca.key'), '-set_serial', `0x${randomBytes(8).toString('hex')}`,
      '-days', '2', '-extfile', file('server.ext'), '-out', file('server.pem')])
    this.caPath = file('ca.pem')
    this.ca = readFileSync(this.caPath, 'utf8')
  }

  async #makeNetwork() {
    const ns = ['-n', this.netns]
    await ip(['netns', 'add', this.netns])
    await ip(['link', 'add', this.hostLink, 'type', 'veth', 'peer', 'name', this.fakeLink,
      'netns', this.netns])
    // No IPv6 on the host end: nothing but the IPv4 routes below leads into the fake.
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${this.hostLink}/disable_ipv6`, '1')
    } catch {}
    await ip(['addr', 'add', `${LINK.host}/${LINK.prefix}`, 'dev', this.hostLink])
    await ip(['link', 'set', this.hostLink, 'up'])
    await ip([...ns, 'link', 'set', 'lo', 'up'])
    for (const address of [...HOSTS, DNS_SERVER, SOCKS.address]) {
      await ip([...ns, 'addr', 'add', `${address}/32`, 'dev', 'lo'])
    }
    await ip([...ns, 'addr', 'add', `${LINK.fake}/${LINK.prefix}`, 'dev', this.fakeLink])
    await ip([...ns, 'link', 'set', this.fakeLink, 'up'])
    // Replies to any source (the host, or a sandbox's address if it is not NATed) go back
    // through the host.
    await ip([...ns, 'route', 'add', 'default', 'via', LINK.host])
    for (const cidr of ROUTED) {
      await ip(['route', 'add', cidr, 'via', LINK.fake, 'dev', this.hostLink])
    }
  }

  async #startServers(dns) {
    const server = spawn('ip', ['netns', 'exec', this.netns, process.execPath,
      join(here, 'fakenet_server.js')], { stdio: ['pipe', 'pipe', 'inherit'] })
    this.#server = server
    server.unref()
    server.stdin.unref?.()
    server.stdout.unref?.()
    const ready = new Promise((resolve, reject) => {
      this.#pending.set('ready', { resolve, reject })
      setTimeout(() => reject(new Error('the fake internet did not start')), READY_TIMEOUT_MS).unref()
    })
    server.once('exit', (code, signal) => {
      for (const { reject } of this.#pending.values()) {
        reject(new Error(`the fake internet's servers exited (${code ?? signal})`))
      }
      this.#pending.clear()
    })
    readline.createInterface({ input: server.stdout }).on('line', (line) => this.#onLine(line))
    server.stdin.write(JSON.stringify({ hosts: HOSTS, dnsAddress: DNS_SERVER, dns,
      socks: this.socks, routed: ROUTED,
      cert: readFileSync(join(this.dir, 'server.pem'), 'utf8'),
      key: readFileSync(join(this.dir, 'server.key'), 'utf8') }) + '\n')
    server.stdout.ref?.()
    try {
      await ready
    } finally {
      server.stdout.unref?.()
    }
  }

  #onLine(line) {
    const message = JSON.parse(line)
    const key = message.ready || (message.error && message.id === undefined) ? 'ready' : message.id
    const waiter = this.#pending.get(key)
    if (!waiter) return
    this.#pending.delete(key)
    if (message.ready || message.ok) waiter.resolve(message.result)
    else waiter.reject(new Error(`fake internet: ${message.error}`))
  }

  // One request to the servers; their stdout keeps this process alive meanwhile.
  async #request(op, fields = {}) {
    if (!this.#server || this.#stopping) throw new Error('FakeNet is not running')
    const id = ++this.#nextId
    const answered = new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }))
    this.#server.stdout.ref?.()
    this.#server.stdin.write(JSON.stringify({ id, op, ...fields }) + '\n')
    try {
      return await answered
    } finally {
      if (this.#pending.size === 0) this.#server?.stdout.unref?.()
    }
  }

  // Replaces the DNS table: name (lower case, '*.' wildcards) -> an IPv4 address, a list
  // of them, or { cname: 'other.name' } (the answer carries the chain and the target's A
  // records, as a recursive resolver's would). Other names are NXDOMAIN.
  async setDns(entries) {
    await this.#request('setDns', { table: table(entries) })
  }

  // Changes the SOCKS5 proxy: { enabled } (false: nothing listens at SOCKS, so connections
  // are refused, and open tunnels are cut), { username, password } (username null: no
  // authentication), { mode: 'socks5' | 'silent' (accepts, never answers) | 'http' (answers
  // as an HTTP server) }. `fake.socks` follows.
  async setSocks(change) {
    const next = socksSettings({ ...this.socks, ...change })
    await this.#request('setSocks', { socks: next })
    this.socks = next
  }

  // What the servers received, oldest first (at most 1000 entries): { time, service:
  // 'http' | 'https' | 'tcp-echo' | 'udp-echo' | 'dns' | 'socks', remoteAddress, ... }.
  // A SOCKS entry has an outcome: 'tunnel' (with username, destination, port, bytesOut,
  // bytesIn, closed; updated while it is open), 'auth-failed', 'no-acceptable-method',
  // 'not-allowed' (outside the fake internet), 'unsupported', 'unreachable', 'bad-request',
  // 'silent' or 'http'.
  async log() {
    return this.#request('log')
  }

  async clearLog() {
    await this.#request('clearLog')
  }

  // Removes the namespace, links, routes and files, and releases the lock. Idempotent;
  // safe after a failed start.
  stop() {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop() {
    const server = this.#server
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server.once('exit', resolve))
      server.ref() // until it has exited
      server.stdin.end()
      const timer = setTimeout(() => server.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    if (this.caPath || this.#server || this.dir) {
      await ipQuietly(['netns', 'del', this.netns])
      // The namespace's end goes with the namespace, the host's end and its routes with it,
      // but the kernel does that asynchronously: delete it now and wait until it is gone.
      await ipQuietly(['link', 'del', 'dev', this.hostLink])
      for (let i = 0; i < 100 && await linkExists(this.hostLink); i++) await sleep(20)
    }
    if (this.dir) rmSync(this.dir, { recursive: true, force: true })
    process.removeListener('exit', this.#onExit)
    if (running === this) running = null
    const holder = this.#lockHolder
    if (holder && holder.exitCode === null && holder.signalCode === null) {
      const released = new Promise((resolve) => holder.once('exit', resolve))
      holder.ref()
      holder.stdin.end()
      await released
    }
  }

  // On process exit without stop() (a test that threw past its after hook, an uncaught
  // error): only synchronous calls are possible here.
  #cleanupSync() {
    try {
      this.#server?.kill('SIGKILL')
    } catch {}
    for (const args of [['netns', 'del', this.netns], ['link', 'del', 'dev', this.hostLink]]) {
      try {
        execFileSync('ip', args, { stdio: 'ignore' })
      } catch {}
    }
    if (this.dir) rmSync(this.dir, { recursive: true, force: true })
    // The lock is released when this process's end of the holder's stdin closes.
  }
}
