// Floods are bounded: connection caps per client address and in total, header and relay
// timeouts, and what reaches the audit log. The load test opens 1000 trickling connections
// from ten loopback addresses against a daemon with a low open-file limit, and shows that
// a create by another client still succeeds.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { Sandbox } from 'e2b'
import { startDaemon, until } from './harness.js'

// The value of one sample in an exposition text; 0 when the series does not exist yet.
function sample(text, series) {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

async function metrics(daemon) {
  const res = await fetch(daemon.url + '/isobox/metrics', { headers: { 'X-API-KEY': daemon.apiKey } })
  assert.equal(res.status, 200)
  return res.text()
}

function openFds(pid) {
  return readdirSync(`/proc/${pid}/fd`).length
}

function softFileLimit(pid) {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n')
    .find((l) => l.startsWith('Max open files'))
  return Number(line.split(/\s+/)[3])
}

// A connection that sends nothing until told to, then one header byte at a time. Its
// headers never end.
const kNeverEndingHeader = 'GET /isobox/health HTTP/1.1\r\nHost: flood\r\nX-Pad: ' + 'a'.repeat(4096)

function openTrickler(port, localAddress) {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress })
  const conn = { socket, localAddress, sent: 0, data: '', closed: false, closedAt: 0 }
  conn.connected = new Promise((resolve) => {
    socket.once('connect', resolve)
    socket.once('close', resolve)
  })
  socket.on('data', (chunk) => { conn.data += chunk })
  socket.on('error', () => {})
  socket.on('close', () => {
    conn.closed = true
    conn.closedAt = Date.now()
  })
  return conn
}

function trickle(conns) {
  for (const conn of conns) {
    if (!conn.closed) conn.socket.write(kNeverEndingHeader[conn.sent++ % kNeverEndingHeader.length])
  }
}

test('1000 trickling connections neither exhaust the descriptors nor stop a create', async () => {
  const perClient = 60
  const maxConnections = 700
  // Soft 512, hard 1024 open files: without the caps, 1000 connections would run the
  // daemon out of descriptors.
  const daemon = await startDaemon({
    wrapper: ['prlimit', '--nofile=512:1024', '--'],
    args: ['--max-connections-per-client', String(perClient), '--max-connections',
      String(maxConnections), '--max-sandboxes', '16', '--header-timeout', '120'],
  })
  const port = Number(new URL(daemon.url).port)
  const flood = []
  const wave = []
  const ticker = setInterval(() => trickle([...flood, ...wave]), 1000)
  try {
    // The soft limit was raised to the hard one at start.
    assert.equal(softFileLimit(daemon.pid), 1024)
    const before = await metrics(daemon)
    const refusedBefore = sample(before, 'isobox_http_connections_refused_total{reason="per_client"}')

    // 10 addresses x 100 connections, 60 admitted from each.
    for (let i = 0; i < 1000; i++) flood.push(openTrickler(port, `127.0.0.${2 + (i % 10)}`))
    await Promise.all(flood.map((c) => c.connected))
    await until('the connections over the per-address cap to be closed',
      () => flood.filter((c) => c.closed).length >= 400, 20000)
    await sleep(500)  // and no more than those
    const refused = flood.filter((c) => c.closed)
    assert.equal(refused.length, 400)
    for (let a = 2; a < 12; a++) {
      assert.equal(refused.filter((c) => c.localAddress === `127.0.0.${a}`).length, 40)
    }
    // A refusal is a 429 (when the client was still there to read it) or a bare close.
    for (const conn of refused) {
      if (conn.data !== '') assert.match(conn.data, /^HTTP\/1\.1 429 Too Many Requests\r\n/)
    }
    const during = await metrics(daemon)
    assert.equal(
      sample(during, 'isobox_http_connections_refused_total{reason="per_client"}') - refusedBefore, 400)
    assert.ok(sample(during, 'isobox_http_connections') >= 600)

    // Another client still creates a sandbox and runs a command in it, while the 600
    // admitted connections keep trickling.
    const sandbox = await Sandbox.create({ requestTimeoutMs: 30000 })
    const run = await sandbox.commands.run('echo ok')
    assert.equal(run.stdout, 'ok\n')
    await sandbox.kill()
    assert.equal(flood.filter((c) => c.closed).length, 400, 'the admitted connections stay open')

    // The global cap: 150 more connections from ten other addresses fill it; the rest are
    // closed at once.
    for (let i = 0; i < 150; i++) wave.push(openTrickler(port, `127.0.0.${20 + (i % 10)}`))
    await Promise.all(wave.map((c) => c.connected))
    await until('refusals over the global cap', () => wave.some((c) => c.closed), 10000)
    let overGlobal = 0
    while (overGlobal !== wave.filter((c) => c.closed).length) {  // until it settles
      overGlobal = wave.filter((c) => c.closed).length
      await sleep(500)
    }
    assert.ok(overGlobal > 0 && overGlobal < 150, `${overGlobal} refused over the global cap`)
    const fds = openFds(daemon.pid)
    assert.ok(fds < softFileLimit(daemon.pid), `${fds} descriptors open`)
    assert.ok(fds < maxConnections + 200, `${fds} descriptors for ${maxConnections} connections`)
    assert.equal(flood.filter((c) => c.closed).length, 400)

    // Once the flood ends, every slot is given back.
    clearInterval(ticker)
    for (const conn of [...flood, ...wave]) conn.socket.destroy()
    const after = await until('the connections to be released', async () => {
      const text = await metrics(daemon)
      return sample(text, 'isobox_http_connections') <= 3 && text
    }, 20000)
    assert.equal(sample(after, 'isobox_http_connections_refused_total{reason="global"}'), overGlobal)
  } finally {
    clearInterval(ticker)
    for (const conn of [...flood, ...wave]) conn.socket.destroy()
    await daemon.stop()
  }
})

// One raw HTTP/1.1 exchange: the request is written at once, the answer read until the
// server closes the connection.
function rawExchange(port, request, { timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let data = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('no answer: ' + data)) },
      timeoutMs)
    socket.on('connect', () => socket.write(request))
    socket.on('data', (chunk) => { data += chunk })
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve(data) })
  })
}

test('header and relay timeouts, malformed ids and unknown sandboxes', async (t) => {
  const daemon = await startDaemon({ args: ['--header-timeout', '2', '--relay-idle-timeout', '2'] })
  const port = Number(new URL(daemon.url).port)
  const withKey = { 'X-API-KEY': daemon.apiKey }
  const audit = async (query) => {
    const res = await fetch(daemon.url + '/isobox/audit?' + new URLSearchParams(query),
      { headers: withKey })
    assert.equal(res.status, 200)
    return res.json()
  }
  try {
    await t.test('a connection that trickles its headers is closed after --header-timeout', async () => {
      const before = sample(await metrics(daemon), 'isobox_http_header_timeouts_total')
      const conn = openTrickler(port, '127.0.0.1')
      await conn.connected
      const opened = Date.now()
      const ticker = setInterval(() => trickle([conn]), 250)
      try {
        await until('the trickler to be closed', () => conn.closed, 10000)
      } finally {
        clearInterval(ticker)
      }
      assert.ok(conn.closedAt - opened >= 1500, `closed after ${conn.closedAt - opened} ms`)
      assert.ok(conn.sent >= 4, 'it was sending all along')
      assert.equal(sample(await metrics(daemon), 'isobox_http_header_timeouts_total'), before + 1)
    })

    await t.test('a kept-alive connection may idle longer than the header timeout', async () => {
      const socket = net.connect({ host: '127.0.0.1', port })
      let data = ''
      socket.on('data', (chunk) => { data += chunk })
      await new Promise((resolve) => socket.once('connect', resolve))
      const request = 'GET /isobox/health HTTP/1.1\r\nHost: x\r\n\r\n'
      socket.write(request)
      await until('the first answer', () => data.includes('"status":"ok"'))
      await sleep(3000)
      data = ''
      socket.write(request)
      await until('the second answer', () => data.includes('"status":"ok"'))
      assert.match(data, /^HTTP\/1\.1 200 OK\r\n/)
      socket.destroy()
    })

    await t.test('a malformed or over-long sandbox id is a 400, never audited', async () => {
      const longId = 'a'.repeat(500)
      const cases = [
        [{ 'E2b-Sandbox-Id': longId, 'E2b-Sandbox-Port': '49983' }, 'Invalid sandbox ID\n'],
        [{ 'E2b-Sandbox-Id': 'a'.repeat(21), 'E2b-Sandbox-Port': '49983' }, 'Invalid sandbox ID\n'],
        [{ 'E2b-Sandbox-Id': 'ABCDEFGHIJ', 'E2b-Sandbox-Port': '49999' }, 'Invalid sandbox ID\n'],
        [{ 'E2b-Sandbox-Port': '49983' }, 'missing header\n'],
      ]
      for (const [headers, body] of cases) {
        const res = await fetch(daemon.url + '/process.Process/Start', {
          method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: '{}',
        })
        assert.equal(res.status, 400)
        assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8')
        assert.equal(await res.text(), body)
      }
      // The Host form too.
      const answer = await rawExchange(port,
        `GET /health HTTP/1.1\r\nHost: 49983-${'b'.repeat(40)}.isobox.test\r\n\r\n`)
      assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/)
      assert.ok(answer.endsWith('\r\n\r\nInvalid sandbox ID\n'))
      const records = await audit({ limit: '1000' })
      assert.ok(!JSON.stringify(records).includes('aaaaaaaaaaaaaaaaaaaaa'))
      assert.ok(!JSON.stringify(records).includes('bbbbbbbbbbbbbbbbbbbbb'))
    })

    await t.test('a command for a sandbox that is not running is answered, not audited', async () => {
      const unknown = 'zzzzzzzzzzzzzzzzzzzz'
      for (const [port, path] of [['49983', '/process.Process/Start'], ['49999', '/execute']]) {
        const res = await fetch(daemon.url + path, {
          method: 'POST',
          headers: { 'E2b-Sandbox-Id': unknown, 'E2b-Sandbox-Port': port,
            'Content-Type': 'application/json' },
          body: '{}',
        })
        assert.equal(res.status, 502)
        assert.deepEqual(await res.json(),
          { sandboxId: unknown, message: 'The sandbox was not found', code: 502 })
      }
      assert.deepEqual(await audit({ sandboxId: unknown }), [])
    })

    const sandbox = await Sandbox.create()
    try {
      await t.test('a quiet command outlives the relay idle timeout', async () => {
        // No output for twice the idle timeout: envd is asked for keepalives often enough.
        const run = await sandbox.commands.run('sleep 4; echo done')
        assert.equal(run.stdout, 'done\n')
        const records = await audit({ sandboxId: sandbox.sandboxId })
        assert.ok(records.some((r) => r.action === 'process.start' && r.status === 200))
      })

      await t.test('a request body that stops coming is cut after the idle timeout', async () => {
        const before = sample(await metrics(daemon), 'isobox_relay_timeouts_total')
        const started = Date.now()
        const answer = await rawExchange(port,
          'POST /files?path=stalled.bin HTTP/1.1\r\nHost: x\r\n' +
          `E2b-Sandbox-Id: ${sandbox.sandboxId}\r\nE2b-Sandbox-Port: 49983\r\n` +
          (sandbox.envdAccessToken ? `X-Access-Token: ${sandbox.envdAccessToken}\r\n` : '') +
          'Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n' +
          'only ten b')
        assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/)
        assert.ok(answer.includes('"message":"the request body made no progress for 2 s"'))
        assert.ok(Date.now() - started >= 1500)
        assert.equal(sample(await metrics(daemon), 'isobox_relay_timeouts_total'), before + 1)
      })
    } finally {
      await sandbox.kill()
    }
  } finally {
    await daemon.stop()
  }
})
