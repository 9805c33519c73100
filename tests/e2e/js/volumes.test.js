// Volumes through the unmodified `e2b` SDK: the volume API (/volumes), the content API on
// isoboxd's own port (E2B_VOLUME_API_URL, set by the harness), and volumeMounts on create:
// one volume in several sandboxes at once, owned by `user` inside, kept after they end, its
// size limit, the refusals (unknown volume, bad paths, in use, another key's).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import {
  Sandbox, Volume, VolumeError, VolumeNotFoundError, VolumePathNotFoundError, VolumeFileType,
  AuthenticationError, CommandExitError,
} from 'e2b'
import { startDaemon, until } from './harness.js'

let daemon
// Sandboxes the tests started, killed at the end whatever happened.
const started = []

before(async () => {
  // A small default size, so that filling a volume is quick; a warm pool of one base
  // sandbox, which a create with volumes must not take.
  daemon = await startDaemon({
    args: ['--volume-size-mb', '64', '--volume-max-mb', '256'],
    pools: ['base=1', 'code-interpreter-v1=0'],
  })
})

after(async () => {
  for (const sandbox of started) await sandbox.kill().catch(() => {})
  await daemon?.stop()
})

async function create(opts) {
  const sandbox = await Sandbox.create('base', { timeoutMs: 120000, ...opts })
  started.push(sandbox)
  return sandbox
}

// A command's stdout; a failure's exit code and stderr as { exitCode, stderr }.
async function run(sandbox, cmd, opts = {}) {
  try {
    return (await sandbox.commands.run(cmd, opts)).stdout
  } catch (err) {
    if (err instanceof CommandExitError) return { exitCode: err.exitCode, stderr: err.stderr }
    throw err
  }
}

async function pools() {
  const res = await fetch(`${daemon.url}/isobox/pools`, { headers: { 'X-API-KEY': daemon.apiKey } })
  assert.equal(res.status, 200)
  return res.json()
}

function rawCall(method, path, body, apiKey = daemon.apiKey) {
  const headers = { 'X-API-KEY': apiKey }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  return fetch(`${daemon.url}${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  })
}

test('the volume API: create, list, get, connect, destroy, with E2B name rules', async () => {
  const volume = await Volume.create('e2e-crud')
  assert.match(volume.volumeId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  assert.equal(volume.name, 'e2e-crud')
  assert.ok(volume.token.length >= 32)
  const listed = await Volume.list()
  assert.ok(listed.some((v) => v.volumeId === volume.volumeId && v.name === 'e2e-crud'))
  const info = await Volume.getInfo(volume.volumeId)
  assert.equal(info.name, 'e2e-crud')
  assert.equal(info.token, volume.token)
  const connected = await Volume.connect(volume.volumeId)
  assert.equal(connected.token, volume.token)
  // Isobox's own field, beside E2B's.
  const raw = await (await rawCall('GET', `/volumes/${volume.volumeId}`)).json()
  assert.equal(raw.sizeMB, 64)

  await assert.rejects(Volume.create('e2e-crud'), (err) => err instanceof VolumeError &&
    /^409: a volume named 'e2e-crud' already exists/.test(err.message))
  for (const bad of ['has space', 'dot.name', '', 'x'.repeat(251)]) {
    await assert.rejects(Volume.create(bad), (err) => err instanceof VolumeError &&
      err.message.startsWith('400: '), bad)
  }
  const tooBig = await rawCall('POST', '/volumes', { name: 'too-big', sizeMB: 257 })
  assert.equal(tooBig.status, 400)
  assert.match((await tooBig.json()).message, /sizeMB/)

  assert.equal(await Volume.destroy(volume.volumeId), true)
  assert.equal(await Volume.destroy(volume.volumeId), false)
  await assert.rejects(Volume.getInfo(volume.volumeId), VolumeNotFoundError)
  assert.ok(!(await Volume.list()).some((v) => v.volumeId === volume.volumeId))
  // Audited with the volume's id and name, never its token.
  const res = await fetch(`${daemon.url}/isobox/audit?limit=1000`,
    { headers: { 'X-API-KEY': daemon.apiKey } })
  const records = (await res.json()).filter((r) => r.details?.volumeID === volume.volumeId)
  assert.deepEqual(records.map((r) => [r.action, r.status, r.details.name]).sort(),
    [['volume.create', 201, 'e2e-crud'], ['volume.destroy', 204, 'e2e-crud']])
  assert.ok(!JSON.stringify(records).includes(volume.token))
  // Its content API refuses the old token now.
  await assert.rejects(volume.list('/'), AuthenticationError)
})

test('the content API: write, read, list, makeDir, getInfo, updateMetadata, exists, remove', async () => {
  const volume = await Volume.create('e2e-content')
  try {
    const written = await volume.writeFile('/hello.txt', 'Hello, volume')
    assert.equal(written.name, 'hello.txt')
    assert.equal(written.path, '/hello.txt')
    assert.equal(written.type, VolumeFileType.FILE)
    assert.equal(written.size, 13)
    assert.equal(written.uid, 1000)
    assert.equal(written.mode, 0o644)
    assert.ok(written.mtime instanceof Date && !isNaN(written.mtime))
    assert.equal(await volume.readFile('/hello.txt'), 'Hello, volume')
    assert.deepEqual(await volume.readFile('hello.txt', { format: 'bytes' }),
      new TextEncoder().encode('Hello, volume'))
    // A second write without force is refused; with force it replaces.
    await assert.rejects(volume.writeFile('/hello.txt', 'again'), (err) =>
      err instanceof VolumeError && err.message.startsWith('409: '))
    await volume.writeFile('/hello.txt', 'replaced', { force: true, mode: 0o600 })
    assert.equal(await volume.readFile('/hello.txt'), 'replaced')
    await volume.writeFile('/empty.txt', '')
    assert.equal(await volume.readFile('/empty.txt'), '')
    assert.equal((await volume.readFile('/empty.txt', { format: 'bytes' })).length, 0)
    // Binary data in a stream, a larger body (4 MiB in chunks both ways).
    const big = new Uint8Array(4 << 20).map((_, i) => (i * 7) & 0xff)
    await volume.writeFile('/big.bin', new Blob([big]).stream())
    assert.deepEqual(await volume.readFile('/big.bin', { format: 'bytes' }), big)

    const dir = await volume.makeDir('/nested/deep/dir', { force: true })
    assert.equal(dir.type, VolumeFileType.DIRECTORY)
    assert.equal(dir.mode, 0o755)
    await assert.rejects(volume.makeDir('/nested'), (err) => err.message.startsWith('409: '))
    await assert.rejects(volume.makeDir('/missing/child'), VolumePathNotFoundError)
    await volume.writeFile('/nested/file.txt', 'n')
    const top = (await volume.list('/')).map((e) => e.name)
    assert.deepEqual(top, ['big.bin', 'empty.txt', 'hello.txt', 'nested'])
    const deep = (await volume.list('/nested', { depth: 3 })).map((e) => e.path)
    assert.deepEqual(deep, ['/nested/deep', '/nested/deep/dir', '/nested/file.txt'])
    await assert.rejects(volume.list('/nope'), VolumePathNotFoundError)

    const info = await volume.getInfo('/nested/file.txt')
    assert.equal(info.size, 1)
    const updated = await volume.updateMetadata('/nested/file.txt', { uid: 1001, gid: 1002, mode: 0o640 })
    assert.deepEqual([updated.uid, updated.gid, updated.mode], [1001, 1002, 0o640])
    await assert.rejects(volume.updateMetadata('/nope', { mode: 0o644 }), VolumePathNotFoundError)
    assert.equal(await volume.exists('/nested/file.txt'), true)
    assert.equal(await volume.exists('/nope'), false)
    // ".." never leaves the volume: it stops at the root.
    assert.equal(await volume.readFile('/../../hello.txt'), 'replaced')

    await volume.remove('/nested')
    assert.equal(await volume.exists('/nested'), false)
    await assert.rejects(volume.remove('/nested'), VolumePathNotFoundError)
    await assert.rejects(volume.remove('/'), (err) => err.message.startsWith('400: '))
    // A wrong token is refused before anything is looked at.
    const forged = new Volume(volume.volumeId, volume.name, 'forged-token')
    await assert.rejects(forged.readFile('/hello.txt'), AuthenticationError)
  } finally {
    await Volume.destroy(volume.volumeId)
  }
})

test('one volume in two sandboxes at once: shared writes, owned by user, kept after both end', async () => {
  const volume = await Volume.create('e2e-shared')
  await volume.writeFile('/from-api.txt', 'written by the content API')
  await until('the pool to fill', async () => (await pools()).base.ready === 1, 60000)
  const readyBefore = (await pools()).base.taken
  // By name (a Volume) in one, by id (a string) in the other.
  const a = await create({ volumeMounts: { '/mnt/shared': volume } })
  const b = await create({ volumeMounts: { '/home/user/data': volume.volumeId } })
  assert.equal((await pools()).base.taken, readyBefore, 'a create with volumes starts a new sandbox')
  assert.deepEqual((await a.getInfo()).volumeMounts, [{ name: 'e2e-shared', path: '/mnt/shared' }])
  const listed = await Sandbox.list().nextItems()
  assert.deepEqual(listed.find((s) => s.sandboxId === b.sandboxId).volumeMounts,
    [{ name: 'e2e-shared', path: '/home/user/data' }])

  // Each sees the other's writes; files are `user`'s in both (and to the content API).
  await run(a, 'echo from-a > /mnt/shared/a.txt')
  assert.equal(await run(b, 'cat /home/user/data/a.txt'), 'from-a\n')
  await run(b, 'mkdir /home/user/data/from-b && echo from-b > /home/user/data/from-b/b.txt')
  assert.equal(await run(a, 'cat /mnt/shared/from-b/b.txt'), 'from-b\n')
  assert.equal(await run(a, 'stat -c %U:%G:%a /mnt/shared /mnt/shared/a.txt /mnt/shared/from-api.txt'),
    'user:user:755\nuser:user:644\nuser:user:644\n')
  assert.equal(await run(b, 'cat /home/user/data/from-api.txt'), 'written by the content API')
  assert.equal((await volume.getInfo('/a.txt')).uid, 1000)
  assert.equal(await volume.readFile('/from-b/b.txt'), 'from-b\n')
  // Root in a sandbox writes as root (0 on disk), which the others see as root.
  await run(a, 'echo root > /mnt/shared/root.txt', { user: 'root' })
  assert.equal(await run(b, 'stat -c %U /home/user/data/root.txt'), 'root\n')
  assert.equal((await volume.getInfo('/root.txt')).uid, 0)
  // nosuid, nodev, read-write; and sandbox root cannot unmount it.
  const options = await run(a, "awk '$2 == \"/mnt/shared\" {print $4}' /proc/self/mounts")
  assert.match(options, /(^|,)rw(,|$)/)
  assert.match(options, /nosuid/)
  assert.match(options, /nodev/)
  const umount = await run(a, 'umount /mnt/shared', { user: 'root' })
  assert.notEqual(umount.exitCode, undefined, 'umount failed')

  // In use: 409 for its owner.
  await assert.rejects(Volume.destroy(volume.volumeId), (err) => err instanceof VolumeError &&
    err.message.startsWith('409: ') && err.message.includes(a.sandboxId))
  await a.kill()
  // Paused with its memory (a checkpoint), a sandbox keeps its volume leased (409) and
  // gets it back mounted at the resume, with a process that holds a file in it open.
  await run(b, 'nohup sh -c "exec 3>>/home/user/data/held.log; while true; do echo tick >&3; sleep 0.2; done" >/dev/null 2>&1 &')
  assert.equal(await b.pause(), true)
  assert.equal((await b.getInfo()).state, 'paused')
  await assert.rejects(Volume.destroy(volume.volumeId), (err) => err.message.startsWith('409: '),
    'a paused sandbox holds it too')
  const resumed = await Sandbox.connect(b.sandboxId)
  const ticks = Number(await run(resumed, 'wc -l < /home/user/data/held.log'))
  await new Promise((r) => setTimeout(r, 600))
  assert.ok(Number(await run(resumed, 'wc -l < /home/user/data/held.log')) > ticks,
    'the writer runs on into the volume')
  assert.equal(await run(resumed, 'cat /home/user/data/a.txt'), 'from-a\n')
  // Paused with its files only: the volume is mounted again for the new agent.
  assert.equal(await b.pause({ keepMemory: false }), true)
  const restarted = await Sandbox.connect(b.sandboxId)
  assert.equal(await run(restarted, 'cat /home/user/data/a.txt'), 'from-a\n')
  assert.equal(await run(restarted, 'touch /home/user/data/after && echo ok'), 'ok\n')
  await b.kill()

  // Kept: a third sandbox (after both ended) reads what they wrote.
  const c = await create({ volumeMounts: { '/srv/again': 'e2e-shared' } })
  assert.equal(await run(c, 'cat /srv/again/a.txt /srv/again/from-b/b.txt'), 'from-a\nfrom-b\n')
  await c.kill()
  assert.equal(await Volume.destroy(volume.volumeId), true)
})

test('the size limit: ENOSPC inside the sandbox, 507 from the content API', async () => {
  const res = await rawCall('POST', '/volumes', { name: 'e2e-small', sizeMB: 32 })
  assert.equal(res.status, 201)
  const volume = await Volume.connect((await res.json()).volumeID)
  try {
    const sandbox = await create({ volumeMounts: { '/mnt/small': volume } })
    const filled = await run(sandbox, 'dd if=/dev/zero of=/mnt/small/fill bs=1M count=64')
    assert.notEqual(filled.exitCode, undefined, 'dd past the size fails')
    assert.match(filled.stderr, /No space left on device/)
    const size = Number(await run(sandbox, 'stat -c %s /mnt/small/fill'))
    assert.ok(size > 20 << 20 && size <= 32 << 20, `${size} bytes`)
    // The sandbox's own disk is untouched: it can still write there.
    assert.equal(await run(sandbox, 'echo ok > /home/user/elsewhere && cat /home/user/elsewhere'), 'ok\n')
    await assert.rejects(volume.writeFile('/more.bin', new Uint8Array(8 << 20)), (err) =>
      err instanceof VolumeError && err.message.startsWith('507: '))
    assert.equal(await volume.exists('/more.bin'), false, 'a failed write leaves no file')
    await sandbox.kill()
    await volume.remove('/fill')
    await volume.writeFile('/more.bin', new Uint8Array(8 << 20))
  } finally {
    await Volume.destroy(volume.volumeId)
  }
})

test('refusals on create: an unknown volume is 404, a bad path 400, and nothing is started', async () => {
  const volume = await Volume.create('e2e-refusals')
  try {
    const before = (await Sandbox.list().nextItems()).length
    await assert.rejects(create({ volumeMounts: { '/mnt/x': 'no-such-volume' } }),
      (err) => /^404: volume 'no-such-volume' not found/.test(err.message))
    for (const path of ['relative', '/proc/x', '/dev', '/.isobox/v', '/mnt/../etc', '/']) {
      await assert.rejects(create({ volumeMounts: { [path]: volume } }),
        (err) => err.message.startsWith('400: ') && err.message.includes('volume mount path'), path)
    }
    await assert.rejects(create({ volumeMounts: { '/mnt/a': volume, '/mnt/a/b': volume } }),
      (err) => err.message.startsWith('400: ') && err.message.includes('inside'))
    assert.equal((await Sandbox.list().nextItems()).length, before)
    assert.equal(await Volume.destroy(volume.volumeId), true, 'no lease was left behind')
  } finally {
    await Volume.destroy(volume.volumeId).catch(() => {})
  }
})

test("tenancy: another key's volume is not found, by name or id, to list, get, mount or delete", async () => {
  const newKey = (name) => execFileSync(process.env.ISOBOXD,
    ['--state-dir', daemon.stateDir, 'api-key', 'create', '--name', name],
    { encoding: 'utf8' }).trim().split('\t')[1]
  const keyA = newKey('vol-a')
  const keyB = newKey('vol-b')
  const volume = await Volume.create('e2e-mine', { apiKey: keyA })
  try {
    // The same name is free for another key.
    const other = await Volume.create('e2e-mine', { apiKey: keyB })
    assert.notEqual(other.volumeId, volume.volumeId)
    assert.deepEqual((await Volume.list({ apiKey: keyB })).map((v) => v.volumeId), [other.volumeId])
    await assert.rejects(Volume.getInfo(volume.volumeId, { apiKey: keyB }), VolumeNotFoundError)
    assert.equal(await Volume.destroy(volume.volumeId, { apiKey: keyB }), false)
    await assert.rejects(create({ apiKey: keyB, volumeMounts: { '/mnt/v': volume.volumeId } }),
      (err) => err.message.startsWith('404: '))
    // By name, key B mounts its own volume, never key A's.
    await volume.writeFile('/owner.txt', 'a')
    await other.writeFile('/owner.txt', 'b')
    const sandbox = await create({ apiKey: keyB, volumeMounts: { '/mnt/v': 'e2e-mine' } })
    assert.equal(await run(sandbox, 'cat /mnt/v/owner.txt'), 'b')
    await sandbox.kill()
    // The admin key sees every volume.
    assert.ok((await Volume.list()).some((v) => v.volumeId === volume.volumeId))
    assert.equal(await Volume.destroy(other.volumeId, { apiKey: keyB }), true)
  } finally {
    await Volume.destroy(volume.volumeId, { apiKey: keyA })
  }
})

test('the warm pool refills and serves creates without volumes as before', async () => {
  await until('the pool to fill', async () => (await pools()).base.ready === 1, 60000)
  const taken = (await pools()).base.taken
  const plain = await create({})
  assert.equal((await pools()).base.taken, taken + 1)
  assert.deepEqual((await plain.getInfo()).volumeMounts, [])
  await plain.kill()
})

test('a restarted isoboxd re-adopts a sandbox with its volume: one filesystem, still leased', async () => {
  const saved = { ...process.env }
  const args = ['--volume-size-mb', '32']
  const first = await startDaemon({ onExit: 'keep', args })
  let second
  try {
    const volume = await Volume.create('e2e-restart')
    const sandbox = await Sandbox.create('base', { volumeMounts: { '/mnt/r': volume } })
    await run(sandbox, 'echo before > /mnt/r/before.txt')
    await first.stop({ keepDir: true })
    second = await startDaemon({ dir: first.dir, args })
    const again = await Sandbox.connect(sandbox.sandboxId)
    assert.deepEqual((await again.getInfo()).volumeMounts, [{ name: 'e2e-restart', path: '/mnt/r' }])
    // The content API mounts the filesystem the kept sandbox still holds (never a second
    // one on the same image): each side sees the other's writes.
    await volume.writeFile('/after.txt', 'after\n')
    assert.equal(await run(again, 'cat /mnt/r/before.txt /mnt/r/after.txt'), 'before\nafter\n')
    await run(again, 'echo inside > /mnt/r/inside.txt')
    assert.equal(await volume.readFile('/inside.txt'), 'inside\n')
    await assert.rejects(Volume.destroy(volume.volumeId), (err) => err.message.startsWith('409: '),
      'the lease survived the restart')
    await again.kill()
    assert.equal(await Volume.destroy(volume.volumeId), true)
  } finally {
    await (second ?? first).stop()
    for (const key of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_VOLUME_API_URL', 'E2B_API_KEY']) {
      process.env[key] = saved[key]
    }
  }
})
