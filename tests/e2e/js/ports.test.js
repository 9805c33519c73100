// User ports: a server inside the sandbox is reached through isoboxd, by the
// E2b-Sandbox-Port header or by a "<port>-<id>.<domain>" Host, including a protocol
// upgrade; a closed port answers E2B's 502.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { Sandbox } from 'e2b'
import { startDaemon } from './harness.js'

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  sandbox = await Sandbox.create()
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

function request(headers, { path = '/', upgrade = false } = {}) {
  const url = new URL(daemon.url)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path, headers })
    req.on('response', (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    if (upgrade) req.on('upgrade', (res, socket) => resolve({ status: res.statusCode, socket }))
    req.on('error', reject)
    req.end()
  })
}

async function waitForPort(port) {
  const deadline = Date.now() + 15000
  for (;;) {
    const res = await request({ 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': port })
    if (res.status !== 502) return res
    if (Date.now() > deadline) throw new Error(`port ${port} did not open`)
    await sleep(100)
  }
}

test('an http.server in the sandbox answers through the port header and the Host form', async () => {
  await sandbox.files.write('site/hello.txt', 'hello from inside')
  await sandbox.commands.run('cd site && python3 -m http.server 8000', { background: true })
  const res = await waitForPort(8000)
  assert.equal(res.status, 200)
  const file = await request({ 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': '8000' },
    { path: '/hello.txt' })
  assert.equal(file.body, 'hello from inside')
  const host = sandbox.getHost(8000)
  assert.equal(host, `8000-${sandbox.sandboxId}.e2b.app`)
  const byHost = await request({ Host: host }, { path: '/hello.txt' })
  assert.equal(byHost.body, 'hello from inside')
})

test('a closed port answers 502 with E2B\'s message', async () => {
  const res = await request({ 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': '8999' })
  assert.equal(res.status, 502)
  assert.deepEqual(JSON.parse(res.body), {
    sandboxId: sandbox.sandboxId,
    message: 'The sandbox is running but port is not open',
    port: 8999,
    code: 502,
  })
})

test('an upgraded connection carries bytes both ways', async () => {
  // A minimal upgrade server: answers 101, then echoes every byte back upper-cased.
  const server = [
    'import socket',
    's = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
    's.bind(("127.0.0.1", 8001)); s.listen()',
    'while True:',
    '    c, _ = s.accept(); data = b""',
    '    while b"\\r\\n\\r\\n" not in data: data += c.recv(4096)',
    '    c.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n")',
    '    while chunk := c.recv(4096): c.sendall(chunk.upper())',
    '    c.close()',
  ].join('\n')
  await sandbox.files.write('upgrade_server.py', server)
  await sandbox.commands.run('python3 upgrade_server.py', { background: true })
  const headers = { 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': '8001',
    Connection: 'Upgrade', Upgrade: 'echo' }
  const deadline = Date.now() + 15000
  let res
  for (;;) {
    res = await request(headers, { upgrade: true })
    if (res.status === 101 || Date.now() > deadline) break
    await sleep(100)
  }
  assert.equal(res.status, 101)
  const echoed = new Promise((resolve) => res.socket.once('data', (d) => resolve(d.toString())))
  res.socket.write('ping over the tunnel')
  assert.equal(await echoed, 'PING OVER THE TUNNEL')
  res.socket.destroy()
})
