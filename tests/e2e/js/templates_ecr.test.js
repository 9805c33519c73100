// fromAWSRegistry (issue 20) with the unmodified SDK: isoboxd exchanges the AWS credentials
// for an ECR token at a fake ECR API (HTTPS on loopback, a certificate made here, trusted
// through --ecr-ca-file) that checks the request's Signature Version 4 as AWS would, then
// pulls with user AWS and the token's password from a docker-registry that wants exactly
// those (helpers/registry.js). No internet.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, createHmac } from 'node:crypto'
import { execFile } from 'node:child_process'
import { createServer } from 'node:https'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Sandbox, Template } from 'e2b'
import { startDaemon } from './harness.js'
import { makeImage, startRegistry } from './helpers/registry.js'

const run = promisify(execFile)
const KEY_ID = 'AKIDTEST'
const SECRET = 'secret-wJalrXUtnFEMI-K7MDENG'
const REGION = 'us-east-1'
const PASSWORD = 'ecr-token-password-4f1c9a'
const TARGET = 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken'

const sha256 = (data) => createHash('sha256').update(data).digest('hex')
const hmac = (key, data) => createHmac('sha256', key).update(data).digest()

// What AWS checks: the scope, the signed headers, and the signature recomputed from the
// secret (a request signed with another secret fails, as with AWS).
function checkSignature(req, body) {
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/
    .exec(req.headers.authorization ?? '')
  if (!match) return 'the Authorization header is not SigV4'
  const [, keyId, date, region, service, signed, signature] = match
  if (keyId !== KEY_ID || region !== REGION || service !== 'ecr') return `scope ${match[0]}`
  const amzDate = req.headers['x-amz-date'] ?? ''
  if (!amzDate.startsWith(date)) return 'x-amz-date is not the scope\'s date'
  const names = signed.split(';')
  for (const needed of ['host', 'x-amz-date', 'x-amz-target']) {
    if (!names.includes(needed)) return `${needed} is not signed`
  }
  const canonical = [req.method, '/', '',
    names.map((n) => `${n}:${String(req.headers[n] ?? '').trim()}\n`).join(''),
    signed, sha256(body)].join('\n')
  const toSign = ['AWS4-HMAC-SHA256', amzDate, `${date}/${region}/ecr/aws4_request`,
    sha256(canonical)].join('\n')
  const key = ['ecr', 'aws4_request'].reduce(hmac, hmac(hmac(`AWS4${SECRET}`, date), region))
  return hmac(key, toSign).toString('hex') === signature ? null : 'signature mismatch'
}

// A key and a certificate for `san`: issued by the CA `ca` ({key, cert} files), else
// self-signed (a CA: OpenSSL's v3_ca extensions).
async function makeCertificate(dir, name, san, ca) {
  const key = join(dir, `${name}.key`)
  const cert = join(dir, `${name}.crt`)
  const keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key]
  if (!ca) {
    await run('openssl', ['req', '-x509', ...keyArgs, '-out', cert, '-days', '1',
      '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`])
    return { key, cert }
  }
  const csr = join(dir, `${name}.csr`)
  const ext = join(dir, `${name}.ext`)
  writeFileSync(ext, `subjectAltName=${san}\n`)
  await run('openssl', ['req', '-new', ...keyArgs, '-out', csr, '-subj', `/CN=${name}`])
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key,
    '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', cert])
  return { key, cert }
}

// The fake ECR API: GetAuthorizationToken only, on a certificate for 127.0.0.1 issued by
// a CA of its own (`ca`, what isoboxd is told to trust).
async function startFakeEcr(dir) {
  const ca = await makeCertificate(dir, 'fake-ecr-ca', 'DNS:fake-ecr-ca.test')
  const leaf = await makeCertificate(dir, 'fake-ecr', 'IP:127.0.0.1', ca)
  const requests = []
  const tls = { key: readFileSync(leaf.key), cert: readFileSync(leaf.cert) }
  const server = createServer(tls, (req, res) => {
    let body = ''
    req.on('data', (chunk) => { body += chunk })
    req.on('end', () => {
      const problem = req.headers['x-amz-target'] !== TARGET
        ? 'target'
        : req.headers['content-type'] !== 'application/x-amz-json-1.1' ? 'content type'
          : body !== '{}' ? 'body' : checkSignature(req, body)
      requests.push({ problem, authorization: req.headers.authorization ?? '' })
      res.setHeader('Content-Type', 'application/x-amz-json-1.1')
      if (problem) {
        res.writeHead(403)
        res.end(JSON.stringify({ __type: 'UnrecognizedClientException',
          message: 'The security token included in the request is invalid.' }))
        return
      }
      res.writeHead(200)
      res.end(JSON.stringify({ authorizationData: [{
        authorizationToken: Buffer.from(`AWS:${PASSWORD}`).toString('base64'),
        expiresAt: Date.now() / 1000 + 43200,
        proxyEndpoint: 'https://123456789012.dkr.ecr.us-east-1.amazonaws.com',
      }] }))
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `https://127.0.0.1:${server.address().port}`, ca, requests,
    // Serves another certificate from now on.
    serve: (other) => server.setSecureContext({ key: readFileSync(other.key),
      cert: readFileSync(other.cert) }),
    original: leaf,
    stop: () => new Promise((resolve) => server.close(resolve)) }
}

let dir, ecr, registry, daemon
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'isobox-ecr-'))
  ecr = await startFakeEcr(dir)
  registry = await startRegistry({ auth: { username: 'AWS', password: PASSWORD } })
  daemon = await startDaemon({
    args: ['--no-network', '--disk-pool-mb', '320', '--ecr-endpoint', ecr.url,
      '--ecr-ca-file', ecr.ca.cert],
  })
})
after(async () => {
  await daemon?.stop()
  await registry?.stop()
  await ecr?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

function assertSecretsNotStored(...secrets) {
  const db = readFileSync(join(daemon.stateDir, 'isobox.db'))
  const builds = join(daemon.stateDir, 'builds')
  for (const secret of secrets) {
    assert.ok(!db.includes(secret), `${secret} is in the database`)
    for (const log of readdirSync(builds)) {
      assert.ok(!readFileSync(join(builds, log), 'utf8').includes(secret), `${secret} in ${log}`)
    }
  }
}

test('fromAWSRegistry: a signed token exchange, then a pull as AWS with the token', async () => {
  const image = await makeImage({ registry, name: 'team/app', tag: 'v1',
    files: { 'etc/from-ecr': 'pulled with an ECR token\n' } })
  const logs = []
  await Template.build(
    Template().fromAWSRegistry(image.ref,
      { accessKeyId: KEY_ID, secretAccessKey: SECRET, region: REGION }),
    'from-ecr', { onBuildLogs: (entry) => logs.push(entry.message) })
  assert.ok(logs.includes('Exchanged the AWS credentials for an ECR token'), logs.join('\n'))
  assert.equal(ecr.requests.length, 1)
  assert.equal(ecr.requests[0].problem, null)
  assert.match(ecr.requests[0].authorization,
    new RegExp(`^AWS4-HMAC-SHA256 Credential=${KEY_ID}/\\d{8}/${REGION}/ecr/aws4_request, `))
  const sandbox = await Sandbox.create('from-ecr')
  try {
    assert.equal(await sandbox.files.read('/etc/from-ecr'), 'pulled with an ECR token\n')
  } finally { await sandbox.kill() }
  // Neither the secret key nor the token is stored (spec, build record, build log).
  assertSecretsNotStored(SECRET, PASSWORD)

  // A rebuild takes the image from the cache: no exchange.
  const cached = []
  await Template.build(
    Template().fromAWSRegistry(image.ref,
      { accessKeyId: KEY_ID, secretAccessKey: SECRET, region: REGION }),
    'from-ecr', { onBuildLogs: (entry) => cached.push(entry.message) })
  assert.ok(cached.some((m) => m.startsWith('CACHED FROM ')), cached.join('\n'))
  assert.equal(ecr.requests.length, 1)
})

test('fromAWSRegistry: a wrong secret is refused with AWS\'s own message', async () => {
  const image = await makeImage({ registry, name: 'team/other', tag: 'v1' })
  const wrong = 'not-the-secret-9d8e7f'
  const error = await Template.build(
    Template().fromAWSRegistry(image.ref,
      { accessKeyId: KEY_ID, secretAccessKey: wrong, region: REGION }),
    'ecr-wrong').then(() => null, (e) => e)
  assert.ok(error instanceof Error, 'the build succeeded')
  assert.match(error.message, new RegExp('AWS refused the credentials: UnrecognizedClientException: ' +
    'The security token included in the request is invalid\\.'))
  assert.equal(ecr.requests.at(-1).problem, 'signature mismatch')
  assertSecretsNotStored(wrong, SECRET)

  // A region that is not one is refused before anything is sent.
  const before = ecr.requests.length
  const bad = await Template.build(
    Template().fromAWSRegistry(image.ref,
      { accessKeyId: KEY_ID, secretAccessKey: SECRET, region: 'us-east-1.evil.example' }),
    'ecr-bad-region').then(() => null, (e) => e)
  assert.ok(bad instanceof Error, 'the build succeeded')
  assert.match(bad.message, /awsRegion: .* is not an AWS region/)
  assert.equal(ecr.requests.length, before)
})

test('fromAWSRegistry: the ECR endpoint must prove its name with a trusted certificate', async () => {
  const image = await makeImage({ registry, name: 'team/tls', tag: 'v1' })
  const build = (name) => Template.build(
    Template().fromAWSRegistry(image.ref,
      { accessKeyId: KEY_ID, secretAccessKey: SECRET, region: REGION }),
    name).then(() => null, (e) => e)
  const before = ecr.requests.length
  try {
    // Self-signed, for the right address: not issued by the CA isoboxd trusts.
    ecr.serve(await makeCertificate(dir, 'rogue', 'IP:127.0.0.1'))
    let error = await build('ecr-untrusted')
    assert.ok(error instanceof Error, 'the build succeeded')
    assert.match(error.message, /unreachable: TLS: certificate verify failed/)
    // Issued by the trusted CA, for another name.
    ecr.serve(await makeCertificate(dir, 'elsewhere', 'DNS:elsewhere.test', ecr.ca))
    error = await build('ecr-wrong-name')
    assert.ok(error instanceof Error, 'the build succeeded')
    assert.match(error.message, /unreachable: TLS: certificate verify failed/)
    // Neither endpoint saw a request (the signature, valid for minutes, was never sent).
    assert.equal(ecr.requests.length, before)
  } finally { ecr.serve(ecr.original) }
})
