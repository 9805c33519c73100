// Large bodies through isoboxd's relay to envd, byte for byte: a 64 MiB random file up
// (chunked, with chunk sizes that do not line up with anything) and down through the
// unmodified SDK, a Content-Length upload, a Range download, the same over the TLS
// port (where the relay copies instead of splicing), and malformed chunk framing, which
// must end the request with a 400 naming the problem instead of a hang.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import https from 'node:https'
import net from 'node:net'
import { rmSync } from 'node:fs'
import { Sandbox } from 'e2b'
import { startTlsDaemon } from './harness.js'

const MiB = 1024 * 1024

let daemon
let sandbox
let certDir
let ca
before(async () => {
  ;({ daemon, ca, certDir } = await startTlsDaemon())
  sandbox = await Sandbox.create({ timeoutMs: 600_000 })
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
  if (certDir) rmSync(certDir, { recursive: true, force: true })
})

const sha256 = (data) => createHash('sha256').update(data).digest('hex')

// `data` as a ReadableStream of pieces of irregular sizes (1 byte up to about 1 MiB).
function irregularStream(data) {
  const sizes = [1, 4093, 65536, 1 << 20, 17, 300_001, 8192, 999_999]
  let at = 0
  let i = 0
  return new ReadableStream({
    pull(controller) {
      if (at >= data.length) return controller.close()
      const n = Math.min(sizes[i++ % sizes.length], data.length - at)
      controller.enqueue(data.subarray(at, at + n))
      at += n
    },
  })
}

async function remoteSha256(path) {
  const { stdout } = await sandbox.commands.run(`sha256sum ${path}`, { timeoutMs: 120_000 })
  return stdout.split(' ')[0]
}

function envdHeaders() {
  return { 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': '49983',
    'X-Access-Token': sandbox.envdAccessToken }
}

test('64 MiB up (chunked stream) and down through the SDK come back byte-identical',
  { timeout: 300_000 }, async () => {
    const data = randomBytes(64 * MiB)
    const info = await sandbox.files.write('large/random.bin', irregularStream(data),
      { requestTimeoutMs: 0 })
    assert.equal(info.path, '/home/user/large/random.bin')
    assert.equal(await remoteSha256('large/random.bin'), sha256(data))

    const bytes = await sandbox.files.read('large/random.bin',
      { format: 'bytes', requestTimeoutMs: 0 })
    assert.equal(bytes.length, data.length)
    assert.equal(sha256(bytes), sha256(data))

    // identity (Content-Length, spliced) and a Range in the middle (206).
    const whole = await fetch(`${daemon.url}/files?path=large%2Frandom.bin`,
      { headers: { ...envdHeaders(), 'Accept-Encoding': 'identity' } })
    assert.equal(whole.status, 200)
    assert.equal(whole.headers.get('content-length'), String(data.length))
    assert.equal(sha256(new Uint8Array(await whole.arrayBuffer())), sha256(data))
    const first = 5 * MiB + 3
    const last = 37 * MiB + 11
    const part = await fetch(`${daemon.url}/files?path=large%2Frandom.bin`, {
      headers: { ...envdHeaders(), 'Accept-Encoding': 'identity', Range: `bytes=${first}-${last}` },
    })
    assert.equal(part.status, 206)
    assert.equal(sha256(new Uint8Array(await part.arrayBuffer())),
      sha256(data.subarray(first, last + 1)))
    await sandbox.files.remove('large/random.bin')
  })

test('a Content-Length upload of 24 MiB arrives intact, and the connection stays usable',
  { timeout: 120_000 }, async () => {
    const data = randomBytes(24 * MiB + 5)
    await sandbox.files.write('large/sized.bin', data, { useOctetStream: true })
    assert.equal(await remoteSha256('large/sized.bin'), sha256(data))
    await sandbox.files.write('large/small-after.txt', 'after')
    assert.equal(await sandbox.files.read('large/small-after.txt'), 'after')
  })

// One https request to the daemon's TLS port, body streamed from `pieces`.
function httpsRequest({ method, path, headers, pieces = [] }) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: daemon.tlsPort, servername: 'localhost',
      ca, method, path, headers, agent: false }, (res) => {
      const hash = createHash('sha256')
      let length = 0
      res.on('data', (d) => { hash.update(d); length += d.length })
      res.on('end', () => resolve({ status: res.statusCode, length, sha256: hash.digest('hex') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    for (const piece of pieces) req.write(piece)
    req.end()
  })
}

test('16 MiB up and down over the TLS port come back byte-identical', { timeout: 120_000 },
  async () => {
    const data = randomBytes(16 * MiB + 1)
    const pieces = []
    for (let at = 0; at < data.length; at += 700_001) pieces.push(data.subarray(at, at + 700_001))
    const up = await httpsRequest({ method: 'POST', path: '/files?path=large%2Ftls.bin',
      headers: { ...envdHeaders(), 'Content-Type': 'application/octet-stream',
        'Transfer-Encoding': 'chunked' }, pieces })
    assert.equal(up.status, 200)
    assert.equal(await remoteSha256('large/tls.bin'), sha256(data))
    const down = await httpsRequest({ method: 'GET', path: '/files?path=large%2Ftls.bin',
      headers: { ...envdHeaders(), 'Accept-Encoding': 'identity' } })
    assert.equal(down.status, 200)
    assert.equal(down.length, data.length)
    assert.equal(down.sha256, sha256(data))
  })

// Sends `raw` on a new TCP connection and returns everything that comes back until close.
function rawExchange(raw) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(new URL(daemon.url).port, '127.0.0.1')
    let answer = ''
    socket.on('data', (d) => { answer += d.toString('latin1') })
    socket.on('end', () => resolve(answer))
    socket.on('error', reject)
    socket.write(raw)
  })
}

test('malformed chunk framing ends the upload with an answer and a closed connection',
  { timeout: 30_000 }, async () => {
    const head = `POST /files?path=large%2Fbad.bin HTTP/1.1\r\nHost: x\r\n` +
      Object.entries(envdHeaders()).map(([k, v]) => `${k}: ${v}\r\n`).join('') +
      'Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n'
    const answer = await rawExchange(head + '5\r\nhello\r\nzz\r\n')
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/)
    assert.match(answer, /\r\nConnection: close\r\n/i)
    assert.deepEqual(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), {
      code: 400, message: 'malformed chunked body: bad character in chunk size',
    })
  })
