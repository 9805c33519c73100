// Accounting and evidence of the sandboxes' network (issue 19 points 8 and 9), through the
// unmodified `e2b` SDK against a real isoboxd and the fake internet (helpers/fakenet.js):
// what a sandbox sends shows in /isobox/metrics and in its own metrics, a refused
// connection leaves one `network.denied` audit record (a flood, a bounded number), and a
// rules change leaves `network.update`.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'
import { startDaemon, until } from './harness.js'
import { FakeNet } from './helpers/fakenet.js'
import { OTHER, WEB, run } from './helpers/sandbox_net.js'


let fake
let daemon
before(async () => {
  fake = await FakeNet.start()
  daemon = await startDaemon({ logLevel: process.env.NET_LOG ?? 'warn', args: ['--dns-server', fake.dnsServer] })
})
after(async () => {
  await daemon?.stop()
  await fake?.stop()
})

async function get(path) {
  const res = await fetch(daemon.url + path, { headers: { 'X-API-KEY': daemon.apiKey } })
  const body = await res.text()
  assert.equal(res.status, 200, body)
  return body
}

// The value of one series of /isobox/metrics; 0 when it does not exist (yet).
async function metric(name, id) {
  const series = `${name}{sandbox="${id}"} `
  const line = (await get('/isobox/metrics')).split('\n').find((l) => l.startsWith(series))
  return line ? Number(line.slice(series.length)) : 0
}

async function denials(id) {
  const records = JSON.parse(await get('/isobox/audit?' + new URLSearchParams({ sandboxId: id, limit: '1000' })))
  return records.filter((r) => r.action === 'network.denied')
}


test('what a sandbox sends shows in /isobox/metrics and in its metrics', async () => {
  const sandbox = await Sandbox.create()
  try {
    const upload = await run(sandbox,
      `head -c 200000 /dev/zero | curl -sSf -m 10 -o /dev/null --data-binary @- http://${WEB}/upload`)
    assert.equal(upload.exitCode, 0, upload.stderr)
    const id = sandbox.sandboxId
    await until('the upload in /isobox/metrics',
      async () => await metric('isobox_sandbox_network_egress_bytes_total', id) >= 200000)
    // Packets as the kernel forwards them: segmentation offload makes big ones.
    assert.ok(await metric('isobox_sandbox_network_egress_packets_total', id) >= 3)
    // GET /sandboxes/{id}/metrics: E2B's fields unchanged, isobox's network fields beside.
    let last
    await until('the upload in the sandbox metrics', async () => {
      const samples = JSON.parse(await get(`/sandboxes/${id}/metrics`))
      last = samples.at(-1)
      return last !== undefined && last.networkEgressBytes >= 200000
    })
    for (const field of ['timestamp', 'cpuCount', 'cpuUsedPct', 'memUsed', 'memTotal', 'diskUsed', 'diskTotal']) {
      assert.ok(field in last, field)
    }
    assert.ok(last.networkEgressPackets >= 3, JSON.stringify(last))
    assert.equal(last.networkDeniedConnections, 0, JSON.stringify(last))
    // The SDK reads them as it always did.
    const metrics = await sandbox.getMetrics()
    assert.ok(metrics.length > 0)
  } finally {
    await sandbox.kill()
  }
})

test('a refused connection is one network.denied record; a flood a bounded number', async () => {
  const sandbox = await Sandbox.create({ network: { denyOut: [`${OTHER}/32`] } })
  try {
    const id = sandbox.sandboxId
    for (let i = 0; i < 3; i++) {
      const refused = await run(sandbox, `curl -sS -m 3 http://${OTHER}:8081/`)
      assert.notEqual(refused.exitCode, 0)
    }
    let records
    await until('the network.denied record', async () => (records = await denials(id)).length > 0)
    // Three attempts, one destination and port: one record.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    records = await denials(id)
    assert.equal(records.length, 1, JSON.stringify(records))
    const [record] = records
    assert.equal(record.actor, 'isoboxd')
    assert.deepEqual(
      { by: record.details.by, address: record.details.address, port: record.details.port, protocol: record.details.protocol },
      { by: 'firewall', address: OTHER, port: 8081, protocol: 'tcp' })
    assert.equal(record.details.why, 'denied by the rules')

    // 300 refused connections to as many ports: every one counted, few recorded.
    const flood = await run(sandbox,
      `for p in $(seq 2000 2299); do (exec 3<>/dev/tcp/${OTHER}/$p) 2>/dev/null; done; echo done`)
    assert.match(flood.stdout, /done/)
    await until('the flood counted', async () =>
      await metric('isobox_sandbox_network_denied_connections_total', id) >= 303)
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const flooded = await denials(id)
    assert.ok(flooded.length >= 2, JSON.stringify(flooded))
    assert.ok(flooded.length <= 10, `${flooded.length} records for a flood`)
  } finally {
    await sandbox.kill()
  }
})

test('a rules change is a network.update record with counts, never entries', async () => {
  const sandbox = await Sandbox.create()
  try {
    await Sandbox.updateNetwork(sandbox.sandboxId, { allowOut: ['api.example.test', WEB], denyOut: ['0.0.0.0/0'] })
    let records
    await until('the network.update record', async () => {
      const all = JSON.parse(await get('/isobox/audit?' + new URLSearchParams({ sandboxId: sandbox.sandboxId })))
      records = all.filter((r) => r.action === 'network.update')
      return records.length > 0
    })
    assert.equal(records.length, 1)
    assert.equal(records[0].status, 204)
    assert.deepEqual(records[0].details, { allowOut: 2, denyOut: 1 })
    assert.doesNotMatch(JSON.stringify(records[0]), /example\.test|198\.51/)
  } finally {
    await sandbox.kill()
  }
})
