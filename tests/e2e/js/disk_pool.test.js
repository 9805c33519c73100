// Sandbox disks cannot overcommit the host: they live in a disk pool allocated up front
// (--disk-pool-mb), so sandboxes that fill their disks fill the pool and get ENOSPC in
// their own disks, while isoboxd's database and audit log, on the host's filesystem, stay
// writable; creates are refused with 507 while the pool is below its reserve, and work
// again once the sandboxes that filled it are gone.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox } from 'e2b'
import { startDaemon, until } from './harness.js'

const POOL_MIB = 320

function createRaw(daemon, apiKey = daemon.apiKey) {
  return fetch(`${daemon.url}/sandboxes`, {
    method: 'POST',
    headers: { 'X-API-KEY': apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ templateID: 'base', timeout: 60 }),
  })
}

function auditRecords(daemon) {
  let text = ''
  try { text = readFileSync(join(daemon.stateDir, 'audit.log'), 'utf8') } catch { return [] }
  return text.trimEnd().split('\n').filter((line) => line !== '').map((line) => JSON.parse(line))
}

// The bytes the pool image holds on the host's filesystem.
function allocated(daemon) {
  return statSync(join(daemon.stateDir, 'disk-pool.img')).blocks * 512
}

test('sandboxes that fill the disk pool leave the database and audit log writable', async () => {
  const daemon = await startDaemon({ args: ['--disk-pool-mb', String(POOL_MIB)] })
  const sandboxes = []
  try {
    const taken = allocated(daemon)
    assert.ok(taken >= POOL_MIB * 1024 * 1024, `the pool is allocated up front (${taken})`)
    // Three sandboxes of 1 GiB disks in a pool of 320 MiB, each writing until its disk
    // says no (every write synced: a buffered write would fail only at writeback).
    for (let i = 0; i < 3; i++) sandboxes.push(await Sandbox.create({ timeoutMs: 300000 }))
    const fills = await Promise.all(sandboxes.map((sandbox) => sandbox.commands
      .run('dd if=/dev/zero of=/home/user/fill bs=1M count=1024 oflag=dsync',
        { timeoutMs: 240000 })
      .then(() => null, (error) => error)))
    for (const [i, fill] of fills.entries()) {
      assert.ok(fill !== null, `sandbox ${i} wrote 1 GiB into a pool of ${POOL_MIB} MiB`)
      assert.match(fill.stderr ?? String(fill), /No space left on device|Input\/output error/)
    }
    assert.ok(fills.some((fill) => /No space left on device/.test(fill.stderr)),
      fills.map((fill) => fill.stderr).join('\n'))
    // The writes landed in the pool's own space: not a byte more of the host's.
    assert.equal(allocated(daemon), taken)

    // A create is refused, with the numbers, and the refusal is audited.
    const refused = await createRaw(daemon)
    assert.equal(refused.status, 507)
    const body = await refused.json()
    assert.equal(body.code, 507)
    assert.match(body.message, /the sandbox disk pool is full: \d+ MiB free of \d+ MiB, below its reserve of \d+ MiB/)
    await until('the refusal in the audit log', () => auditRecords(daemon)
      .some((r) => r.action === 'sandbox.create' && r.status === 507))

    // The database takes writes: a new API key, stored and then accepted.
    const out = execFileSync(process.env.ISOBOXD,
      ['--state-dir', daemon.stateDir, 'api-key', 'create', '--admin', '--name', 'while the pool is full'],
      { encoding: 'utf8' })
    const newKey = out.trim().split('\t')[1]
    assert.match(newKey, /^e2b_/)
    const listed = await fetch(`${daemon.url}/sandboxes`, { headers: { 'X-API-KEY': newKey } })
    assert.equal(listed.status, 200)
    assert.equal((await listed.json()).length, 3)

    // Kills work (each is recorded in the database), and the space comes back.
    for (const sandbox of sandboxes.splice(0)) assert.equal(await sandbox.kill(), true)
    await until('a create to be admitted again', async () => {
      const res = await createRaw(daemon, newKey)
      if (res.status === 507) return false
      const text = await res.text()
      assert.equal(res.status, 201, text)
      sandboxes.push(await Sandbox.connect(JSON.parse(text).sandboxID))
      return true
    }, 30000)
    await sandboxes[0].files.write('/home/user/after.txt', 'written after the pool was full')
    assert.equal(await sandboxes[0].files.read('/home/user/after.txt'),
      'written after the pool was full')
    await until('the kills in the audit log', () =>
      auditRecords(daemon).filter((r) => r.action === 'sandbox.kill' && r.status === 204)
        .length === 3)
  } finally {
    for (const sandbox of sandboxes) await sandbox.kill().catch(() => {})
    await daemon.stop()
  }
})
