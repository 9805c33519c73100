// Templates from images (issue 20): the unmodified SDK and CLI build from images on a real
// registry on loopback (Debian's docker-registry) holding images these tests make with
// umoci, busybox-static and bash-static (helpers/registry.js). Covers the image's own
// root (no host /usr), its config, accounts added, the cache, credentials, mirrors, bad
// references and registries, and malicious layers.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Sandbox, Template } from 'e2b'
import { startDaemon } from './harness.js'
import { craftLayer, hiddenDeviceLayer, makeImage, startRegistry } from './helpers/registry.js'

const run = promisify(execFile)
const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex')

let registry, secured, daemon
before(async () => {
  registry = await startRegistry()
  secured = await startRegistry({ auth: { username: 'puller', password: 'open sesame' } })
  daemon = await startDaemon({
    args: ['--no-network', '--registry-mirror', `docker.io=http://${registry.url}`],
  })
})
after(async () => {
  await daemon?.stop()
  await registry?.stop()
  await secured?.stop()
})

async function buildError(template, name) {
  try {
    await Template.build(template, name)
  } catch (error) {
    return error
  }
  assert.fail(`the build of ${name} succeeded`)
}

test('fromImage: the image is the root; its config, accounts added, steps on top', async () => {
  const image = await makeImage({
    registry, name: 'test/plain', tag: 'v1',
    files: { 'etc/motd': 'from the image\n', 'opt/tool': '#!/bin/sh\necho tool\n' },
    layers: [(rootfs) => rmSync(join(rootfs, 'etc/motd'))],
    config: { env: ['PATH=/bin:/opt', 'FROM_IMAGE=yes'], workingdir: '/opt', cmd: ['/bin/sh'] },
  })
  const logs = []
  await Template.build(
    Template().fromImage(image.ref).runCmd('chmod 4755 /opt/tool; echo step > /opt/step', { user: 'root' }),
    'from-image', { onBuildLogs: (entry) => logs.push(entry.message) })
  assert.ok(logs.some((m) => m.startsWith('Pulling ')), logs.join('\n'))
  assert.ok(logs.some((m) => /Added the account user/.test(m)), logs.join('\n'))
  const sandbox = await Sandbox.create('from-image')
  try {
    const run = async (cmd, opts) => (await sandbox.commands.run(cmd, opts)).stdout
    // The image's own tree: busybox, no host /usr; the deleted file stays deleted.
    assert.equal(await run('cat /opt/step'), 'step\n')
    assert.equal((await sandbox.commands.run('ls /usr/bin/python3', { user: 'root' })
      .catch((e) => e)).exitCode, 1)
    assert.equal((await sandbox.commands.run('cat /etc/motd').catch((e) => e)).exitCode, 1)
    assert.match(await run('readlink /bin/ls'), /^busybox$/m)
    // The image's ENV and WORKDIR; the default user `user` the image lacked.
    assert.equal(await run('echo $FROM_IMAGE'), 'yes\n')
    assert.equal(await run('pwd'), '/opt\n')
    assert.equal(await run('id -u; id -un'), '1000\nuser\n')
    assert.match(await run('grep ^user: /etc/passwd'), /^user:x:1000:1000::\/home\/user:\/bin\/bash$/m)
    assert.equal(await run('stat -c %U:%a /home/user'), 'user:750\n')
    // Setuid bits kept, owned by the image's root; the agent is mounted beside the tree.
    assert.equal(await run('stat -c %U:%a /opt/tool'), 'root:4755\n')
    assert.match(await run('ls /.isobox'), /^isobox-envd$/m)
    // The sandbox's root owns the image's files, and writes land in its own upper.
    await sandbox.commands.run('echo changed > /opt/step', { user: 'root' })
    assert.equal(await run('cat /opt/step'), 'changed\n')
  } finally { await sandbox.kill() }
  const again = await Sandbox.create('from-image')
  try {
    assert.equal((await again.commands.run('cat /opt/step')).stdout, 'step\n')
  } finally { await again.kill() }

  // An unchanged rebuild takes the image from the cache; skipCache pulls it again.
  const cached = []
  await Template.build(
    Template().fromImage(image.ref).runCmd('chmod 4755 /opt/tool; echo step > /opt/step', { user: 'root' }),
    'from-image', { onBuildLogs: (entry) => cached.push(entry.message) })
  assert.ok(cached.some((m) => m.startsWith('CACHED FROM ')), cached.join('\n'))
  const forced = []
  await Template.build(Template().skipCache().fromImage(image.ref), 'from-image-forced',
    { onBuildLogs: (entry) => forced.push(entry.message) })
  assert.ok(forced.some((m) => m.startsWith('Pulling ')), forced.join('\n'))
})

test('fromImage: the image USER and an image that lacks bash', async () => {
  const image = await makeImage({
    registry, name: 'test/owned', tag: 'v1',
    passwd: 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n',
    group: 'root:x:0:\napp:x:1234:\n',
    layers: [(rootfs) => rmSync(join(rootfs, 'bin/bash'))],
    config: { env: ['PATH=/bin'], user: '1234' },
  })
  await Template.build(Template().fromImage(image.ref).runCmd('mkdir -p /opt; echo $0 > /opt/shell', { user: 'root' }),
    'no-bash')
  const sandbox = await Sandbox.create('no-bash')
  try {
    // RUN steps and the start and ready commands use /bin/sh; the SDK's commands name
    // /bin/bash themselves, which this image does not have.
    const root = await sandbox.files.read('/opt/shell')
    assert.equal(root, '/bin/sh\n')
    const error = await sandbox.commands.run('true').catch((e) => e)
    assert.ok(error instanceof Error, 'a command through /bin/bash ran')
  } finally { await sandbox.kill() }
  const info = await Template.build(Template().fromImage(image.ref).setReadyCmd('test "$(id -un)" = app'),
    'image-user')
  assert.ok(info.templateId)
})

test('fromImage: registry credentials, mirrors, and what fails', async () => {
  const image = await makeImage({ registry: secured, name: 'private/app', tag: 'v1',
    files: { 'etc/secret-image': 'private\n' } })
  await Template.build(Template().fromImage(image.ref, { username: 'puller', password: 'open sesame' })
    .runCmd('mkdir -p /opt; cat /etc/secret-image > /opt/seen', { user: 'root' }), 'private-image')
  const sandbox = await Sandbox.create('private-image')
  try {
    assert.equal(await sandbox.files.read('/opt/seen'), 'private\n')
  } finally { await sandbox.kill() }
  // The credentials never reach the build's stored spec nor its log.
  const db = readFileSync(join(daemon.stateDir, 'isobox.db'))
  assert.ok(!db.includes('open sesame'), 'the password is in the database')
  for (const log of readdirSync(join(daemon.stateDir, 'builds'))) {
    assert.ok(!readFileSync(join(daemon.stateDir, 'builds', log), 'utf8').includes('open sesame'))
  }

  let error = await buildError(Template().fromImage(image.ref, { username: 'puller', password: 'wrong' }),
    'bad-creds')
  assert.match(error.message, /refused the credentials|unauthorized/i)
  error = await buildError(Template().fromImage(image.ref), 'no-creds')
  assert.match(error.message, /requires credentials|unauthorized/i)
  error = await buildError(Template().fromImage(`${registry.url}/test/absent:v9`), 'absent')
  assert.match(error.message, /not found/)
  error = await buildError(Template().fromImage('127.0.0.1:1/test/plain:v1'), 'unreachable')
  assert.match(error.message, /unreachable/)
  error = await buildError(Template().fromImage('Not A Reference'), 'malformed')
  assert.match(error.message, /fromImage.*image reference/)

  // A Docker Hub name comes from the mirror (--registry-mirror docker.io=...): no internet.
  await makeImage({ registry, name: 'library/mirrored', tag: '1', files: { 'etc/mirrored': 'yes\n' } })
  await Template.build(Template().fromImage('mirrored:1').runCmd('mkdir -p /opt; cat /etc/mirrored > /opt/m', { user: 'root' }),
    'from-mirror')
  const mirrored = await Sandbox.create('from-mirror')
  try {
    assert.equal(await mirrored.files.read('/opt/m'), 'yes\n')
  } finally { await mirrored.kill() }
})

test('malicious layers fail the build with the reason, and nothing of them stays', async () => {
  const shadowBefore = sha256('/etc/shadow')
  const passwdBefore = sha256('/etc/passwd')
  const cases = [
    ['device', [{ name: 'dev/evil', type: 'char', devmajor: 1, devminor: 3 }], /device/],
    ['dotdot', [{ name: '../escape', data: 'x' }], /\.\.|outside|escape/],
    ['absolute', [{ name: '/etc/escaped', data: 'x' }], /absolute|outside|\//],
    ['hardlink', [{ name: 'etc/link', type: 'hardlink', linkname: '/etc/shadow' }],
      /link|outside|shadow/],
  ]
  for (const [name, entries, reason] of cases) {
    const image = await makeImage({ registry, name: `evil/${name}`, tag: 'v1',
      crafted: [await craftLayer(entries)] })
    const error = await buildError(Template().fromImage(image.ref), `evil-${name}`)
    assert.match(error.message, reason, `${name}: ${error.message}`)
  }
  // A name below an absolute symlink of the same layer lands inside the image (or the
  // layer is refused), never in the host's /etc.
  const through = await makeImage({ registry, name: 'evil/through-symlink', tag: 'v1',
    crafted: [await craftLayer([{ name: 'escape', type: 'symlink', linkname: '/etc' },
      { name: 'escape/isobox-escaped', data: 'x' }])] })
  await Template.build(Template().fromImage(through.ref), 'evil-through').catch(() => {})
  assert.ok(!existsSync('/etc/isobox-escaped'), 'a layer wrote into the host\'s /etc')

  const hidden = await makeImage({ registry, name: 'evil/hidden', tag: 'v1',
    crafted: [await hiddenDeviceLayer()] })
  const error = await buildError(Template().fromImage(hidden.ref), 'evil-hidden')
  assert.match(error.message, /device|size|header/i)

  // An image whose /etc/passwd is an absolute symlink to the host's: the accounts go
  // into the image's own /etc/shadow path (resolved inside the image), never the host's.
  const linked = await makeImage({ registry, name: 'evil/passwd-link', tag: 'v1',
    layers: [(rootfs) => { rmSync(join(rootfs, 'etc/passwd')) }],
    crafted: [await craftLayer([{ name: 'etc/passwd', type: 'symlink', linkname: '/etc/shadow' },
      { name: 'etc/shadow', data: 'root:x:0:0:root:/root:/bin/sh\n' }])] })
  await Template.build(Template().fromImage(linked.ref), 'passwd-link')
  assert.equal(sha256('/etc/shadow'), shadowBefore)
  assert.equal(sha256('/etc/passwd'), passwdBefore)
  const sandbox = await Sandbox.create('passwd-link')
  try {
    assert.match((await sandbox.commands.run('cat /etc/shadow', { user: 'root' })).stdout, /^user:x:1000/m)
  } finally { await sandbox.kill() }

  // Nothing of the refused images is left in the store or its staging.
  assert.deepEqual(readdirSync(join(daemon.stateDir, 'layers', '.staging')), [])
})

test('the E2B CLI builds a Dockerfile FROM an image on the registry', async () => {
  const image = await makeImage({ registry, name: 'test/cli', tag: 'v1', files: { 'etc/cli': 'cli\n' } })
  const dir = mkdtempSync(join(tmpdir(), 'isobox-cli-'))
  try {
    writeFileSync(join(dir, 'e2b.Dockerfile'), `FROM ${image.ref}\nRUN mkdir -p /opt && cp /etc/cli /opt/cli\n`)
    const cli = join(dirname(fileURLToPath(import.meta.url)), 'node_modules', '.bin', 'e2b')
    await run(cli, ['template', 'create', 'cli-image', '--path', dir], {
      env: { ...process.env, E2B_API_URL: daemon.url, E2B_API_KEY: daemon.apiKey }, timeout: 300000,
    })
    const sandbox = await Sandbox.create('cli-image')
    try {
      assert.equal(await sandbox.files.read('/opt/cli'), 'cli\n')
    } finally { await sandbox.kill() }
  } finally { rmSync(dir, { recursive: true, force: true }) }
})
