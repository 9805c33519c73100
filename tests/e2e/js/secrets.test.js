// E2B's Secret API through the unmodified `e2b` SDK (`Secret`): create, getInfo, update,
// list page by page, exists, destroy, the errors the SDK surfaces, a second key that sees
// none of the first key's secrets, and secrets that outlive a restart of isoboxd. No value
// is ever in an answer, in the audit log or in isoboxd's log.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Secret, SecretError, SecretNotFoundError } from 'e2b'
import { startDaemon } from './harness.js'

const VALUE = 'sk-isobox-e2e-FIRST-7d1f0c9a'
const VALUE2 = 'sk-isobox-e2e-SECOND-44b2e8'
const VALUES = [VALUE, VALUE2]
const ARGS = ['--no-network']

let daemon
let logDir     // isoboxd's stderr, kept outside its state directory
let stderrLog
let created    // the SecretInfo of the first secret

// isoboxd with its stderr appended to stderrLog (the wrapper execs it: the pid stays).
function start(dir) {
  return startDaemon({
    dir, args: ARGS, logLevel: 'debug',
    wrapper: ['sh', '-c', 'exec "$@" 2>>"$0"', stderrLog],
  })
}

async function drain(paginator) {
  const pages = []
  while (paginator.hasNext) pages.push(await paginator.nextItems())
  return pages
}

async function rejectsWith(promise, ErrorClass, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof ErrorClass, `${e.constructor.name}: ${e.message}`)
    assert.match(e.message, pattern)
    return true
  })
}

before(async () => {
  logDir = mkdtempSync(join(tmpdir(), 'isobox-secrets-log-'))
  stderrLog = join(logDir, 'isoboxd.stderr')
  daemon = await start()
})
after(async () => {
  await daemon?.stop()
  rmSync(logDir, { recursive: true, force: true })
})

test('create, then getInfo by id and by name: metadata only, never the value', async () => {
  created = await Secret.create('E2E-Key', VALUE, { metadata: { team: 'ml' } })
  assert.equal(created.name, 'e2e-key')  // lower-cased before storage
  assert.match(created.secretId, /^sec_[a-z0-9]{20}$/)
  assert.equal(created.version, 1)
  assert.deepEqual(created.metadata, { team: 'ml' })
  assert.ok(created.createdAt instanceof Date && !isNaN(created.createdAt))
  assert.equal(created.updatedAt.getTime(), created.createdAt.getTime())
  for (const key of [created.secretId, 'e2e-key', 'E2E-KEY']) {
    const info = await Secret.getInfo(key)
    assert.deepEqual(info, created)
  }
  // The raw answers: the Secret schema's fields, nothing else, and no value anywhere.
  const headers = { 'X-API-KEY': daemon.apiKey }
  const one = await fetch(`${daemon.url}/secrets/${created.secretId}`, { headers })
  assert.equal(one.status, 200)
  const text = await one.text()
  assert.ok(!text.includes(VALUE))
  assert.deepEqual(Object.keys(JSON.parse(text)).sort(),
    ['createdAt', 'currentVersion', 'metadata', 'name', 'secretID', 'updatedAt'])
  const list = await (await fetch(`${daemon.url}/secrets`, { headers })).text()
  assert.ok(list.includes(created.secretId) && !list.includes(VALUE))
  // Without a key: 401, as on every control-plane route.
  assert.equal((await fetch(`${daemon.url}/secrets`)).status, 401)
})

test('update stores a new version; metadata is replaced only when given', async () => {
  const updated = await Secret.update('e2e-key', VALUE2)
  assert.equal(updated.secretId, created.secretId)
  assert.equal(updated.version, 2)
  assert.deepEqual(updated.metadata, { team: 'ml' })
  assert.equal(updated.createdAt.getTime(), created.createdAt.getTime())
  assert.ok(updated.updatedAt >= created.updatedAt)
  const again = await Secret.update(created.secretId, VALUE2, { metadata: { rotated: 'yes' } })
  assert.equal(again.version, 3)
  assert.deepEqual(again.metadata, { rotated: 'yes' })
  assert.equal((await Secret.getInfo('e2e-key')).version, 3)
  await rejectsWith(Secret.update('no-such-secret', VALUE2), SecretNotFoundError, /not found/)
})

test('list paginates by name with limit and the next token', async () => {
  for (const name of ['list-d', 'list-b', 'list-e', 'list-a', 'list-c']) {
    await Secret.create(name, `v-${name}`)
  }
  const pages = await drain(Secret.list({ limit: 2 }))
  assert.deepEqual(pages.map((page) => page.length), [2, 2, 2])  // 6 secrets: e2e-key too
  const names = pages.flat().map((info) => info.name)
  assert.deepEqual(names, ['e2e-key', 'list-a', 'list-b', 'list-c', 'list-d', 'list-e'])
  assert.ok(pages.flat().every((info) => info.version >= 1 && info.secretId.startsWith('sec_')))
  // Five secrets by two: 2, 2, 1, and no token after the last page.
  const paginator = Secret.list({ limit: 2, nextToken: 'e2e-key' })
  const rest = await drain(paginator)
  assert.deepEqual(rest.map((page) => page.map((info) => info.name)),
    [['list-a', 'list-b'], ['list-c', 'list-d'], ['list-e']])
  assert.equal(paginator.hasNext, false)
  assert.equal(paginator.nextToken, undefined)
  // One page when it fits.
  assert.deepEqual((await drain(Secret.list())).map((page) => page.length), [6])
  await rejectsWith(Secret.list({ limit: 0 }).nextItems(), SecretError, /^400: 'limit' must be/)
})

test('exists, then destroy: true once, then false', async () => {
  assert.equal(await Secret.exists('list-a'), true)
  assert.equal(await Secret.exists('LIST-A'), true)
  assert.equal(await Secret.exists('never-made'), false)
  const id = (await Secret.getInfo('list-a')).secretId
  assert.equal(await Secret.destroy(id), true)
  assert.equal(await Secret.destroy(id), false)
  assert.equal(await Secret.destroy('list-a'), false)
  assert.equal(await Secret.exists('list-a'), false)
  assert.equal(await Secret.destroy('list-b'), true)  // by name
  assert.equal(await Secret.exists(id), false)
  await rejectsWith(Secret.getInfo('list-b'), SecretNotFoundError, /Secret list-b not found/)
})

test('a taken name is 409; bad names, values and metadata are 400 naming the problem', async () => {
  await rejectsWith(Secret.create('E2E-KEY', 'other'), SecretError,
    /^409: a secret named 'e2e-key' already exists$/)
  await rejectsWith(Secret.create('sec_mine', 'v'), SecretError,
    /^400: .*starts with 'sec_', which is reserved for secret ids/)
  await rejectsWith(Secret.create('has space', 'v'), SecretError,
    /^400: 'name' 'has space' is not a valid secret name/)
  await rejectsWith(Secret.create('x'.repeat(129), 'v'), SecretError,
    /^400: 'name' is longer than 128 bytes/)
  await rejectsWith(Secret.create('empty-value', ''), SecretError, /^400: 'value' must not be empty/)
  await rejectsWith(Secret.create('crlf', 'a\r\nX-Injected: 1'), SecretError,
    /^400: 'value' must not contain NUL, CR, LF/)
  await rejectsWith(Secret.create('big', 'v'.repeat(16385)), SecretError,
    /^400: 'value' is 16385 bytes, longer than 16384 bytes/)
  const many = Object.fromEntries([...Array(33).keys()].map((i) => [`k${i}`, 'v']))
  await rejectsWith(Secret.create('meta', 'v', { metadata: many }), SecretError,
    /^400: 'metadata' has 33 entries, more than 32/)
  await rejectsWith(Secret.create('meta', 'v', { metadata: { k: 'v'.repeat(1025) } }),
    SecretError, /^400: 'metadata.k' is 1025 bytes, longer than 1024 bytes/)
  await rejectsWith(Secret.update('e2e-key', 'v', { metadata: { ['k'.repeat(129)]: 'v' } }),
    SecretError, /^400: 'metadata' key 'k+(\.\.\.)?' is 129 bytes, longer than 128 bytes/)
  // Nothing refused was stored.
  for (const name of ['sec_mine', 'has space', 'empty-value', 'crlf', 'big', 'meta']) {
    assert.equal(await Secret.exists(name), false, name)
  }
  assert.equal((await Secret.getInfo('e2e-key')).version, 3)
})

test('another API key sees none of these secrets', async () => {
  const [, key] = execFileSync(process.env.ISOBOXD,
    ['--state-dir', daemon.stateDir, 'api-key', 'create', '--name', 'tenant-b'],
    { encoding: 'utf8' }).trim().split('\t')
  const asB = { apiKey: key }
  assert.equal(await Secret.exists('e2e-key', asB), false)
  assert.equal(await Secret.exists(created.secretId, asB), false)
  assert.equal(await Secret.destroy('e2e-key', asB), false)
  await rejectsWith(Secret.update('e2e-key', 'stolen', asB), SecretNotFoundError, /not found/)
  assert.deepEqual(await drain(Secret.list(asB)), [[]])
  const own = await Secret.create('tenant-b-key', 'b-value', asB)
  assert.deepEqual((await drain(Secret.list(asB))).flat().map((i) => i.name), ['tenant-b-key'])
  assert.equal(await Secret.exists('tenant-b-key'), true)  // the test key is an admin key
  assert.equal(await Secret.destroy(own.secretId, asB), true)
})

test('secrets outlive a restart of isoboxd', async () => {
  await daemon.stop({ keepDir: true })
  daemon = await start(daemon.dir)
  const info = await Secret.getInfo('e2e-key')
  assert.equal(info.secretId, created.secretId)
  assert.equal(info.version, 3)
  assert.deepEqual(info.metadata, { rotated: 'yes' })
  assert.equal(info.createdAt.getTime(), created.createdAt.getTime())
  const names = (await drain(Secret.list({ limit: 2 }))).flat().map((i) => i.name)
  assert.deepEqual(names, ['e2e-key', 'list-c', 'list-d', 'list-e'])
  const next = await Secret.update('e2e-key', VALUE)
  assert.equal(next.version, 4)
})

test('no value in the audit log or the daemon log; the database is 0600', async () => {
  await daemon.stop({ keepDir: true })  // the audit writer has flushed
  const files = readdirSync(daemon.stateDir).filter((f) => f.startsWith('audit.log'))
  const audit = files.map((f) => readFileSync(join(daemon.stateDir, f), 'utf8')).join('')
  const records = audit.split('\n').filter(Boolean).map((line) => JSON.parse(line))
  const secretRecords = records.filter((r) => r.action.startsWith('secret.'))
  const ok = (action) => secretRecords.filter((r) => r.action === action && r.status < 300)
  assert.ok(ok('secret.create').some((r) => r.details.name === 'e2e-key' &&
    r.details.secretID === created.secretId && r.details.version === 1))
  assert.deepEqual(ok('secret.update').filter((r) => r.details.name === 'e2e-key')
    .map((r) => r.details.version), [2, 3, 4])
  assert.ok(ok('secret.destroy').some((r) => r.details.name === 'list-a'))
  for (const r of secretRecords) {
    assert.deepEqual(Object.keys(r.details).filter((k) => !['secretID', 'name', 'version']
      .includes(k)), [], JSON.stringify(r))
  }
  const stderr = readFileSync(stderrLog, 'utf8')
  assert.ok(stderr.length > 0, 'the daemon wrote its log there')
  for (const value of [...VALUES, 'b-value']) {
    assert.ok(!audit.includes(value), 'a value in the audit log')
    assert.ok(!stderr.includes(value), 'a value in the daemon log')
  }
  for (const suffix of ['', '-wal', '-shm']) {
    let mode
    try { mode = statSync(join(daemon.stateDir, `isobox.db${suffix}`)).mode } catch { continue }
    assert.equal(mode & 0o777, 0o600, `isobox.db${suffix}`)
  }
})
