// envd's plain-HTTP surface through the unmodified `e2b` SDK against a real isoboxd:
// /files reads and writes in every format, writeFiles, octet-stream and gzip both ways,
// file metadata, signed URLs, /envs, /metrics, /init, Range, and the SDK's error classes.
// Where the SDK has no call (Range, /metrics, /init, fetching a signed URL), fetch talks
// to the daemon with the headers the SDK itself sends.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  Sandbox, AuthenticationError, CommandExitError, FileNotFoundError, InvalidArgumentError,
  NotFoundError, TimeoutError,
} from 'e2b'
import { startDaemon } from './harness.js'

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  sandbox = await Sandbox.create({ envs: { CREATED_WITH: 'yes', FOO: 'bar' } })
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

// The headers the SDK sends to envd, optionally without the access token.
function envdHeaders({ token = true } = {}) {
  const headers = { 'E2b-Sandbox-Id': sandbox.sandboxId, 'E2b-Sandbox-Port': '49983' }
  if (token) headers['X-Access-Token'] = sandbox.envdAccessToken
  return headers
}

function envdFetch(path, { token = true, headers = {}, ...init } = {}) {
  return fetch(`${daemon.url}${path}`, { ...init, headers: { ...envdHeaders({ token }), ...headers } })
}

const encoder = new TextEncoder()

test('read and write text, bytes, blob and stream, empty files in every format', async () => {
  const info = await sandbox.files.write('rw/text.txt', 'hello world')
  assert.deepEqual(info, { name: 'text.txt', path: '/home/user/rw/text.txt', type: 'file', metadata: undefined })
  assert.equal(await sandbox.files.read('rw/text.txt'), 'hello world')
  const bytes = new Uint8Array(70000).map((_, i) => (i * 7) % 256)
  await sandbox.files.write('rw/bytes.bin', bytes)
  assert.deepEqual(await sandbox.files.read('rw/bytes.bin', { format: 'bytes' }), bytes)
  const blob = await sandbox.files.read('rw/bytes.bin', { format: 'blob' })
  assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), bytes)
  const stream = await sandbox.files.read('rw/bytes.bin', { format: 'stream' })
  assert.deepEqual(new Uint8Array(await new Response(stream).arrayBuffer()), bytes)
  await sandbox.files.write('rw/from-blob.txt', new Blob(['blob data']))
  assert.equal(await sandbox.files.read('rw/from-blob.txt'), 'blob data')

  await sandbox.files.write('rw/empty.txt', '')
  assert.equal(await sandbox.files.read('rw/empty.txt'), '')
  assert.deepEqual(await sandbox.files.read('rw/empty.txt', { format: 'bytes' }), new Uint8Array(0))
  assert.equal((await sandbox.files.read('rw/empty.txt', { format: 'blob' })).size, 0)
  const emptyStream = await sandbox.files.read('rw/empty.txt', { format: 'stream' })
  assert.equal((await new Response(emptyStream).arrayBuffer()).byteLength, 0)
  const raw = await envdFetch('/files?path=rw%2Fempty.txt')
  assert.equal(raw.headers.get('content-length'), '0')
})

test('writeFiles with relative, absolute and nested paths; octet-stream and streams', async () => {
  const infos = await sandbox.files.writeFiles([
    { path: 'multi/a.txt', data: 'A' },
    { path: '/home/user/multi/deep/b.txt', data: encoder.encode('B') },
    { path: '/tmp/c.txt', data: new Blob(['C']) },
  ])
  assert.deepEqual(infos.map((i) => i.path),
    ['/home/user/multi/a.txt', '/home/user/multi/deep/b.txt', '/tmp/c.txt'])
  assert.equal(await sandbox.files.read('multi/deep/b.txt'), 'B')
  assert.equal(await sandbox.files.read('/tmp/c.txt'), 'C')

  await sandbox.files.write('octet/forced.txt', 'octet body', { useOctetStream: true })
  assert.equal(await sandbox.files.read('octet/forced.txt'), 'octet body')
  const chunks = ['streamed ', 'in ', 'pieces']
  const body = new ReadableStream({
    pull(controller) {
      const next = chunks.shift()
      if (next === undefined) controller.close()
      else controller.enqueue(encoder.encode(next))
    },
  })
  const info = await sandbox.files.write('octet/stream.txt', body)
  assert.equal(info.path, '/home/user/octet/stream.txt')
  assert.equal(await sandbox.files.read('octet/stream.txt'), 'streamed in pieces')
  const { stdout } = await sandbox.commands.run('stat -c %U:%a octet/stream.txt octet')
  assert.equal(stdout, 'user:644\nuser:755\n')
})

test('gzip uploads and downloads', async () => {
  const content = 'gzip me '.repeat(5000)
  const info = await sandbox.files.write('gz/one.txt', content, { gzip: true })
  assert.equal(info.path, '/home/user/gz/one.txt')
  assert.equal(await sandbox.files.read('gz/one.txt', { gzip: true }), content)
  assert.equal(await sandbox.files.read('gz/one.txt'), content)
  const bytes = await sandbox.files.read('gz/one.txt', { format: 'bytes', gzip: true })
  assert.equal(new TextDecoder().decode(bytes), content)
  const infos = await sandbox.files.writeFiles(
    [{ path: 'gz/m1.txt', data: 'File 1' }, { path: 'gz/m2.txt', data: 'File 2' }], { gzip: true })
  assert.equal(infos.length, 2)
  assert.equal(await sandbox.files.read('gz/m2.txt'), 'File 2')
  // On the wire: a gzip body when asked for one.
  const raw = await envdFetch('/files?path=gz%2Fone.txt', { headers: { 'Accept-Encoding': 'gzip' } })
  assert.equal(raw.headers.get('content-encoding'), 'gzip')
  assert.equal(await raw.text(), content)  // fetch decompresses
})

test('metadata: write, getInfo, list, rename, overwrite, writeFiles, octet-stream', async () => {
  const metadata = { author: 'mish', purpose: 'upload' }
  const info = await sandbox.files.write('meta/a.txt', 'content', { metadata })
  assert.deepEqual(info.metadata, metadata)
  assert.deepEqual((await sandbox.files.getInfo('meta/a.txt')).metadata, metadata)
  const listed = (await sandbox.files.list('meta')).find((e) => e.name === 'a.txt')
  assert.deepEqual(listed.metadata, metadata)
  const moved = await sandbox.files.rename('meta/a.txt', 'meta/b.txt')
  assert.deepEqual(moved.metadata, metadata)
  const octet = await sandbox.files.write('meta/o.txt', 'x', { metadata, useOctetStream: true })
  assert.deepEqual(octet.metadata, metadata)
  const many = await sandbox.files.writeFiles(
    [{ path: 'meta/m1.txt', data: '1' }, { path: 'meta/m2.txt', data: '2' }],
    { metadata: { source: 'suite' } })
  for (const entry of many) {
    assert.deepEqual(entry.metadata, { source: 'suite' })
    assert.deepEqual((await sandbox.files.getInfo(entry.path)).metadata, { source: 'suite' })
  }
  const overwritten = await sandbox.files.write('meta/b.txt', 'second')
  assert.equal(overwritten.metadata, undefined)
  assert.equal((await sandbox.files.getInfo('meta/b.txt')).metadata, undefined)
  // Set from inside the sandbox, seen through the API.
  await sandbox.commands.run(
    `python3 -c "import os; os.setxattr('/home/user/meta/b.txt', 'user.e2b.tag', b'inside')"`)
  assert.deepEqual((await sandbox.files.getInfo('meta/b.txt')).metadata, { tag: 'inside' })
})

test('invalid metadata is rejected by the SDK and by envd', async () => {
  await assert.rejects(sandbox.files.write('meta/bad.txt', 'x', { metadata: { 'bad key': 'v' } }),
    InvalidArgumentError)
  await assert.rejects(
    sandbox.files.write('meta/bad.txt', 'x', { metadata: { big: 'v'.repeat(5000) } }),
    (error) => error instanceof InvalidArgumentError &&
      error.message === 'invalid metadata: metadata larger than 4096 bytes')
  assert.equal(await sandbox.files.exists('meta/bad.txt'), false)
})

test('signed download and upload URLs: valid, expired, tampered, as root', async () => {
  await sandbox.files.write('signed/hello.txt', 'hello world')
  const get = async (url) => {
    const res = await fetch(url, { headers: envdHeaders({ token: false }) })
    return { status: res.status, body: await res.text() }
  }
  const valid = await sandbox.downloadUrl('signed/hello.txt', { useSignatureExpiration: 10_000 })
  assert.deepEqual(await get(valid), { status: 200, body: 'hello world' })
  const noExpiry = await sandbox.downloadUrl('signed/hello.txt')
  assert.deepEqual(await get(noExpiry), { status: 200, body: 'hello world' })
  const expired = await sandbox.downloadUrl('signed/hello.txt', { useSignatureExpiration: -10_000 })
  const expiredRes = await get(expired)
  assert.equal(expiredRes.status, 401)
  assert.deepEqual(JSON.parse(expiredRes.body), { code: 401, message: 'signature is already expired' })
  const tampered = new URL(valid)
  tampered.searchParams.set('path', 'signed/other.txt')
  assert.deepEqual(JSON.parse((await get(tampered)).body), { code: 401, message: 'invalid signature' })
  const unsigned = new URL(valid)
  unsigned.searchParams.delete('signature')
  assert.deepEqual(JSON.parse((await get(unsigned)).body),
    { code: 401, message: 'missing signature query parameter' })

  await sandbox.files.write('hello.txt', 'root file', { user: 'root' })
  const asRoot = await sandbox.downloadUrl('hello.txt', { user: 'root', useSignatureExpiration: 10_000 })
  assert.deepEqual(await get(asRoot), { status: 200, body: 'root file' })

  const post = async (url) => {
    const form = new FormData()
    form.append('file', 'file content')
    const res = await fetch(url, { method: 'POST', body: form, headers: envdHeaders({ token: false }) })
    return { status: res.status, body: JSON.parse(await res.text()) }
  }
  const upload = await sandbox.uploadUrl('signed/up.txt', { useSignatureExpiration: 10_000 })
  assert.deepEqual(await post(upload), {
    status: 200, body: [{ name: 'up.txt', path: '/home/user/signed/up.txt', type: 'file' }],
  })
  assert.equal(await sandbox.files.read('signed/up.txt'), 'file content')
  const rootUpload = await sandbox.uploadUrl('up.txt', { user: 'root', useSignatureExpiration: 10_000 })
  assert.deepEqual((await post(rootUpload)).body, [{ name: 'up.txt', path: '/root/up.txt', type: 'file' }])
  const expiredUpload = await sandbox.uploadUrl('signed/up.txt', { useSignatureExpiration: -100_000 })
  assert.deepEqual(await post(expiredUpload),
    { status: 401, body: { code: 401, message: 'signature is already expired' } })
  // A read signature is no write signature.
  const readAsWrite = await post(await sandbox.downloadUrl('signed/up.txt'))
  assert.deepEqual(readAsWrite.body, { code: 401, message: 'invalid signature' })
})

test('/envs reflects the envVars given at create, and needs the token', async () => {
  const res = await envdFetch('/envs')
  assert.equal(res.status, 200)
  // The create's variables, and those every networked sandbox gets for isoboxd's egress CA
  // (README "Network").
  assert.deepEqual(await res.json(), {
    CREATED_WITH: 'yes',
    FOO: 'bar',
    NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/isobox-egress-ca.pem',
    REQUESTS_CA_BUNDLE: '/etc/ssl/certs/ca-certificates.crt',
    SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt',
  })
  const denied = await envdFetch('/envs', { token: false })
  assert.equal(denied.status, 401)
  assert.deepEqual(await denied.json(), {
    code: 401,
    message: 'unauthorized access, please provide a valid access token or method signing if supported',
  })
})

test('Range requests on /files', async () => {
  await sandbox.files.write('range.txt', '0123456789abcdef')
  const part = await envdFetch('/files?path=range.txt', { headers: { Range: 'bytes=4-7' } })
  assert.equal(part.status, 206)
  assert.equal(part.headers.get('content-range'), 'bytes 4-7/16')
  assert.equal(await part.text(), '4567')
  const suffix = await envdFetch('/files?path=range.txt', { headers: { Range: 'bytes=-3' } })
  assert.equal(await suffix.text(), 'def')
  const beyond = await envdFetch('/files?path=range.txt', { headers: { Range: 'bytes=16-' } })
  assert.equal(beyond.status, 416)
  assert.equal(beyond.headers.get('content-range'), 'bytes */16')
  await beyond.arrayBuffer()
})

test('/metrics and /init', async () => {
  const metrics = await envdFetch('/metrics')
  assert.equal(metrics.status, 200)
  const body = await metrics.json()
  for (const key of ['ts', 'cpu_count', 'cpu_used_pct', 'mem_total', 'mem_used', 'mem_cache',
    'mem_total_mib', 'mem_used_mib', 'disk_used', 'disk_total']) {
    assert.equal(typeof body[key], 'number', key)
  }
  assert.ok(body.disk_total > 0)
  assert.equal((await envdFetch('/metrics', { token: false })).status, 401)

  const init = (payload) => envdFetch('/init', {
    method: 'POST', token: false, body: JSON.stringify(payload), headers: { 'Content-Type': 'application/json' },
  })
  const refused = await init({ envVars: { LATE: 'no' } })
  assert.equal(refused.status, 401)
  assert.deepEqual(await refused.json(), { code: 401, message: 'access token reset not authorized' })
  const applied = await init({ accessToken: sandbox.envdAccessToken, envVars: { LATE: 'set' } })
  assert.equal(applied.status, 204)
  assert.equal((await sandbox.commands.run('echo $LATE $FOO')).stdout, 'set bar\n')
})

test('the SDK raises its error classes', async () => {
  await assert.rejects(sandbox.files.read('missing.txt'),
    (error) => error instanceof FileNotFoundError && error instanceof NotFoundError &&
      error.message === "path '/home/user/missing.txt' does not exist")
  await assert.rejects(sandbox.files.read('/home/user'),
    (error) => error instanceof InvalidArgumentError && error.message === "path '/home/user' is a directory")
  await assert.rejects(sandbox.files.write('x.txt', 'x', { user: 'nobody-here' }), AuthenticationError)
  await assert.rejects(sandbox.commands.run('exit 3'),
    (error) => error instanceof CommandExitError && error.exitCode === 3)
  await assert.rejects(sandbox.commands.run('sleep 10', { timeoutMs: 300 }), TimeoutError)
  await assert.rejects(sandbox.commands.connect(999999), NotFoundError)
})
