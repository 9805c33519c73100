// The test registry and test images (helpers/registry.js) on their own, before any
// template test relies on them: an image with a file deleted by its second layer and a
// crafted third layer is pushed, its manifest lists the three layers, and pulled back and
// unpacked (as isoboxd will: skopeo copy to an OCI layout, umoci raw unpack) it shows the
// deletion and the crafted file. Root (umoci keeps owners); no isoboxd.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync,
  statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { BUSYBOX_APPLETS, craftLayer, hiddenDeviceLayer, makeImage, startRegistry }
  from './helpers/registry.js'

const run = promisify(execFile)

let registry
before(async () => { registry = await startRegistry() })
after(async () => { await registry?.stop() })

// Every path under `root` whose name starts with `.wh.`.
function whiteoutsUnder(root) {
  const found = []
  for (const entry of readdirSync(root, { recursive: true })) {
    if (entry.split('/').pop().startsWith('.wh.')) found.push(entry)
  }
  return found
}

test('the registry answers the v2 API on 127.0.0.1 only', async () => {
  assert.match(registry.url, /^127\.0\.0\.1:\d+$/)
  const response = await fetch(`http://${registry.url}/v2/`)
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('docker-distribution-api-version'), 'registry/2.0')
  const listening = (await run('ss', ['-Htln', `sport = :${registry.port}`])).stdout
  assert.match(listening, new RegExp(`127\\.0\\.0\\.1:${registry.port}\\s`))
  assert.doesNotMatch(listening, new RegExp(`(\\*|0\\.0\\.0\\.0|\\[::\\]):${registry.port}\\s`))
})

test('an image with a whiteout layer and a crafted layer is pushed, pulled and unpacked', async (t) => {
  const crafted = await craftLayer([
    { name: 'opt', type: 'dir' },
    { name: 'opt/crafted.txt', data: 'from a crafted layer\n', mode: 0o600 },
  ])
  const image = await makeImage({
    registry, name: 'fixture/two-layers', tag: 'v1',
    files: { 'etc/motd': 'deleted by the second layer\n', 'etc/keep': 'kept\n' },
    layers: [(rootfs) => rmSync(join(rootfs, 'etc/motd'))],
    crafted: [crafted],
    config: { env: ['PATH=/bin', 'FIXTURE=1'], cmd: ['/bin/sh'], workingdir: '/tmp', user: 'root' },
  })
  assert.equal(image.ref, `${registry.url}/fixture/two-layers:v1`)
  assert.match(image.digest, /^sha256:[0-9a-f]{64}$/)
  assert.equal(image.layers, 3)

  const raw = (await run('skopeo', ['--insecure-policy', 'inspect', '--tls-verify=false', '--raw',
    `docker://${image.ref}`])).stdout
  const manifest = JSON.parse(raw)
  assert.equal(manifest.layers.length, 3)
  for (const layer of manifest.layers) {
    assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip')
  }

  const dir = mkdtempSync(join(tmpdir(), 'isobox-pull-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const started = process.hrtime.bigint()
  await run('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false',
    `docker://${image.ref}`, `oci:${join(dir, 'layout')}:img`])
  const copied = process.hrtime.bigint()
  const rootfs = join(dir, 'rootfs')
  await run('umoci', ['raw', 'unpack', '--image', `${join(dir, 'layout')}:img`, rootfs])
  const unpacked = process.hrtime.bigint()
  t.diagnostic(`skopeo copy ${Number(copied - started) / 1e6} ms, ` +
    `umoci raw unpack ${Number(unpacked - copied) / 1e6} ms`)

  // First layer: busybox and its applets, bash, the account files.
  assert.ok(statSync(join(rootfs, 'bin/busybox')).mode & 0o111)
  assert.ok(statSync(join(rootfs, 'bin/bash')).size > 1e6)
  for (const applet of BUSYBOX_APPLETS) {
    assert.equal(readlinkSync(join(rootfs, 'bin', applet)), 'busybox', applet)
  }
  assert.equal(readFileSync(join(rootfs, 'etc/passwd'), 'utf8'), 'root:x:0:0:root:/root:/bin/sh\n')
  assert.equal(readFileSync(join(rootfs, 'etc/group'), 'utf8'), 'root:x:0:\n')
  assert.equal(statSync(join(rootfs, 'tmp')).mode & 0o7777, 0o1777)
  // Second layer: the whiteout deleted the file and left no trace.
  assert.equal(existsSync(join(rootfs, 'etc/motd')), false)
  assert.equal(readFileSync(join(rootfs, 'etc/keep'), 'utf8'), 'kept\n')
  assert.deepEqual(whiteoutsUnder(rootfs), [])
  // Third layer: the crafted file, as crafted.
  assert.equal(readFileSync(join(rootfs, 'opt/crafted.txt'), 'utf8'), 'from a crafted layer\n')
  assert.equal(lstatSync(join(rootfs, 'opt/crafted.txt')).mode & 0o777, 0o600)

  // The image config reached the registry.
  const config = JSON.parse((await run('skopeo', ['--insecure-policy', 'inspect',
    '--tls-verify=false', '--config', `docker://${image.ref}`])).stdout)
  assert.deepEqual(config.config.Env, ['PATH=/bin', 'FIXTURE=1'])
  assert.deepEqual(config.config.Cmd, ['/bin/sh'])
  assert.equal(config.config.WorkingDir, '/tmp')
  assert.equal(config.config.User, 'root')

  // The busybox in the image runs (a static binary, no loader needed).
  const { stdout } = await run(join(rootfs, 'bin/busybox'), ['echo', 'runs'])
  assert.equal(stdout, 'runs\n')
})

test('crafted layers keep what no honest tool writes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-craft-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'layer.tar')
  writeFileSync(path, await craftLayer([
    { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3 },
    { name: '../escape', data: 'x' },
    { name: '/abs', data: 'y' },
    { name: 'h', type: 'hardlink', linkname: '/etc/shadow' },
    { name: 'etc/.wh..wh..opq' },
  ]))
  const { stdout } = await run('python3', ['-c', `
import sys, tarfile
for m in tarfile.open(sys.argv[1]):
    print(m.name, m.type.decode(), m.linkname or '-', m.devmajor, m.devminor)
`, path])
  assert.equal(stdout, 'dev/null 3 - 1 3\n../escape 0 - 0 0\n/abs 0 - 0 0\n' +
    'h 1 /etc/shadow 0 0\netc/.wh..wh..opq 0 - 0 0\n')
  // pax records are written as given, even ones a reader must refuse.
  const pax = await craftLayer([{ name: 'big', pax: { size: '+1024' } }])
  assert.ok(pax.includes(Buffer.from(' size=+1024\n')))
})

// Why isoboxd's layer scan reads every layer twice (src/runtime/archive_scan.h): umoci
// creates a device node that libarchive's reading of the same layer never shows.
test('umoci unpacks the device of the hidden-device layer', async (t) => {
  const image = await makeImage({
    registry, name: 'fixture/hidden-device', crafted: [await hiddenDeviceLayer()],
  })
  const dir = mkdtempSync(join(tmpdir(), 'isobox-pull-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  await run('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false',
    `docker://${image.ref}`, `oci:${join(dir, 'layout')}:img`])
  const rootfs = join(dir, 'rootfs')
  await run('umoci', ['raw', 'unpack', '--image', `${join(dir, 'layout')}:img`, rootfs])
  const evil = lstatSync(join(rootfs, 'evil'))
  assert.ok(evil.isCharacterDevice())
  assert.equal(evil.rdev, (1 << 8) | 3)
  assert.equal(lstatSync(join(rootfs, 'a')).size, 1024)
  assert.equal(existsSync(join(rootfs, 'cover')), false)
})
