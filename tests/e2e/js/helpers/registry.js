// A private OCI registry on 127.0.0.1 and small test images pushed to it, for the tests of
// templates built from images (issue 20). No internet, no daemon, no systemd unit: the
// Debian packages docker-registry (distribution 2.8), umoci and skopeo, run as children.
//
//   const registry = await startRegistry()        // { port, url: '127.0.0.1:PORT', stop() }
//   const image = await makeImage({
//     registry, name: 'test/base', tag: 'v1',
//     files: { 'etc/motd': 'hello\n' },            // more files of the first layer
//     layers: [(rootfs) => rmSync(join(rootfs, 'etc/motd'))],  // one layer per callback
//     crafted: [craftLayer([{ name: 'dev/null', type: 'char', devmajor: 1, devminor: 3 }])],
//     config: { env: ['PATH=/bin'], cmd: ['/bin/sh'], workingdir: '/', user: 'root' },
//   })
//   image.ref      // '127.0.0.1:PORT/test/base:v1'
//   image.digest   // 'sha256:…' of the pushed manifest
//   await registry.stop()                          // in after(): idempotent
//
// The first layer holds /bin/busybox (busybox-static) with applet links, /bin/bash
// (bash-static), /etc/passwd and /etc/group (root only unless given), /tmp and /root.
// `layers` callbacks change the unpacked rootfs between `umoci repack`s (a deleted file
// becomes a `.wh.` whiteout); `crafted` layers are tar files added as they are with
// `umoci raw add-layer` (umoci compresses them), for layers no honest tool writes:
// craftLayer builds them with python3's tarfile.
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, copyFileSync,
  chmodSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)

export const BUSYBOX_APPLETS = ['sh', 'ls', 'cat', 'echo', 'id', 'true', 'env', 'mkdir', 'rm',
  'tar', 'sleep', 'printf', 'grep', 'readlink', 'stat', 'chmod', 'cp', 'ln', 'touch', 'cut']
const READY_TIMEOUT_MS = 20000
const PORT_ATTEMPTS = 5

// A port free on 127.0.0.1 a moment ago (the registry cannot be told to pick one).
async function freePort() {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

// GET /v2/ answers 200 with distribution's API header: this registry, not another
// process that took the port.
// With htpasswd auth it answers 401 with that header.
async function answers(port, auth) {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/v2/`)
    return response.status === (auth ? 401 : 200) &&
      response.headers.get('docker-distribution-api-version') === 'registry/2.0'
  } catch {
    return false
  }
}

async function startOn(dir, port, auth) {
  const config = join(dir, `registry-${port}.yml`)
  const authLines = []
  if (auth) {
    // bcrypt, the only hash distribution's htpasswd accepts.
    const line = (await run('htpasswd', ['-Bbn', auth.username, auth.password])).stdout.trim()
    writeFileSync(join(dir, 'htpasswd'), `${line}\n`)
    authLines.push('auth:', `  htpasswd: {realm: isobox-test, path: ${join(dir, 'htpasswd')}}`)
  }
  writeFileSync(config, [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog: {disabled: true}',
    'storage:',
    `  filesystem: {rootdirectory: ${join(dir, 'data')}}`,
    '  delete: {enabled: true}',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ...authLines,
    '',
  ].join('\n'))
  // setpriv --pdeathsig: the registry dies with this test process, even a killed one.
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'docker-registry', 'serve', config],
    { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr = (stderr + chunk).slice(-4000) })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (!(await answers(port, auth))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      return { child: null, error: `docker-registry exited (${child.exitCode}): ${stderr}` }
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      await exited
      throw new Error(`docker-registry did not answer on 127.0.0.1:${port}: ${stderr}`)
    }
    await sleep(25)
  }
  return { child, exited }
}

// Starts docker-registry on 127.0.0.1 with its storage in a new temporary directory.
// options.auth: { username, password }: every request needs them (htpasswd, bcrypt).
export async function startRegistry(options = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-registry-'))
  let lastError = ''
  for (let attempt = 0; attempt < PORT_ATTEMPTS; ++attempt) {
    const port = await freePort()
    const { child, exited, error } = await startOn(dir, port, options.auth)
    if (!child) {
      lastError = error  // most likely the port was taken in between: try another
      continue
    }
    let stopped = false
    return {
      port,
      url: `127.0.0.1:${port}`,
      dir,
      auth: options.auth,
      async stop() {
        if (stopped) return
        stopped = true
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
        await exited
        rmSync(dir, { recursive: true, force: true })
      },
    }
  }
  rmSync(dir, { recursive: true, force: true })
  throw new Error(`docker-registry did not start: ${lastError}`)
}

// A tar file (a Buffer) built by python3's tarfile from `entries`, for `crafted` layers:
// { name, type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo',
//   data (string, files), linkname, mode, devmajor, devminor, pax ({key: value}) }.
// The names are used as given: absolute, `..`, anything.
export async function craftLayer(entries) {
  const script = `
import io, json, sys, tarfile
types = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE,
         'hardlink': tarfile.LNKTYPE, 'char': tarfile.CHRTYPE, 'block': tarfile.BLKTYPE,
         'fifo': tarfile.FIFOTYPE}
out = io.BytesIO()
with tarfile.open(fileobj=out, mode='w', format=tarfile.PAX_FORMAT) as tar:
    for e in json.load(sys.stdin):
        info = tarfile.TarInfo(e['name'])
        info.type = types[e.get('type', 'file')]
        info.mode = e.get('mode', 0o755 if info.type == tarfile.DIRTYPE else 0o644)
        info.linkname = e.get('linkname', '')
        info.devmajor, info.devminor = e.get('devmajor', 0), e.get('devminor', 0)
        info.pax_headers = e.get('pax', {})
        data = e.get('data', '').encode()
        info.size = len(data) if info.type == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if info.size else None)
sys.stdout.buffer.write(out.getvalue())
`
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'] })
  const chunks = []
  let stderr = ''
  child.stdout.on('data', (chunk) => chunks.push(chunk))
  child.stderr.on('data', (chunk) => { stderr += chunk })
  child.stdin.end(JSON.stringify(entries))
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`craftLayer: python3 exited with ${code}: ${stderr}`)
  return Buffer.concat(chunks)
}

// A layer whose `evil` character device (1:3) only some tar readers see: a pax
// `size=+1024` gives entry `a` 1024 bytes of data for Go's archive/tar (umoci unpacks
// `evil`, the header after them) and none for libarchive 3.6 (which reads a `cover` file
// there whose data holds the `evil` header). See src/runtime/tar_walker.h.
export async function hiddenDeviceLayer() {
  const script = `
import sys, tarfile
def header(name, kind, size, major=0, minor=0):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = kind, size, 0o644, 1700000000
    info.devmajor, info.devminor = major, minor
    return info.tobuf(format=tarfile.USTAR_FORMAT)
record = b' size=+1024\\n'
record = str(len(record) + 2).encode() + record  # the length counts its own 2 digits
pax = header('PaxHeader/a', tarfile.XHDTYPE, len(record)) + record.ljust(512, b'\\0')
out = pax + header('a', tarfile.REGTYPE, 0) + header('cover', tarfile.REGTYPE, 1024)
out += b'\\0' * 512 + header('evil', tarfile.CHRTYPE, 0, 1, 3) + b'\\0' * 1024
sys.stdout.buffer.write(out)
`
  const { stdout } = await run('python3', ['-c', script], { encoding: 'buffer' })
  return stdout
}

// The first layer's tree: busybox with its applets, bash, the account files, `files`.
function populateBase(rootfs, { passwd, group, files }) {
  for (const d of ['bin', 'etc', 'root', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true })
  chmodSync(join(rootfs, 'tmp'), 0o1777)
  chmodSync(join(rootfs, 'root'), 0o700)
  copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'))
  copyFileSync('/bin/bash-static', join(rootfs, 'bin/bash'))
  chmodSync(join(rootfs, 'bin/busybox'), 0o755)
  chmodSync(join(rootfs, 'bin/bash'), 0o755)
  for (const applet of BUSYBOX_APPLETS) symlinkSync('busybox', join(rootfs, 'bin', applet))
  writeFileSync(join(rootfs, 'etc/passwd'), passwd ?? 'root:x:0:0:root:/root:/bin/sh\n')
  writeFileSync(join(rootfs, 'etc/group'), group ?? 'root:x:0:\n')
  for (const [path, content] of Object.entries(files ?? {})) {
    mkdirSync(dirname(join(rootfs, path)), { recursive: true })
    writeFileSync(join(rootfs, path), content)
  }
}

// umoci config flags for { env: ['K=V'] | {K: V}, cmd: [..], entrypoint: [..], workingdir,
// user, labels: {k: v} }.
function configArgs(config) {
  const args = []
  const env = Array.isArray(config.env) ? config.env
    : Object.entries(config.env ?? {}).map(([k, v]) => `${k}=${v}`)
  for (const e of env) args.push('--config.env', e)
  for (const c of config.cmd ?? []) args.push('--config.cmd', c)
  for (const e of config.entrypoint ?? []) args.push('--config.entrypoint', e)
  if (config.workingdir !== undefined) args.push('--config.workingdir', config.workingdir)
  if (config.user !== undefined) args.push('--config.user', config.user)
  for (const [k, v] of Object.entries(config.labels ?? {})) args.push('--config.label', `${k}=${v}`)
  return args
}

// Builds the image in a temporary OCI layout and pushes it to `registry` as NAME:TAG.
// Returns { ref, digest, layers (count) }. Runs as root (umoci unpack keeps owners).
export async function makeImage({ registry, name, tag = 'latest', files, passwd, group,
  layers = [], crafted = [], config = { env: ['PATH=/bin'], cmd: ['/bin/sh'] } }) {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-image-'))
  try {
    const image = `${join(dir, 'oci')}:${tag}`
    const bundle = join(dir, 'bundle')
    const rootfs = join(bundle, 'rootfs')
    await run('umoci', ['init', '--layout', join(dir, 'oci')])
    await run('umoci', ['new', '--image', image])
    await run('umoci', ['unpack', '--image', image, bundle])
    populateBase(rootfs, { passwd, group, files })
    // --refresh-bundle: the next repack then diffs against this one, not the empty image.
    await run('umoci', ['repack', '--refresh-bundle', '--image', image, bundle])
    for (const change of layers) {
      await change(rootfs)
      await run('umoci', ['repack', '--refresh-bundle', '--image', image, bundle])
    }
    for (const [i, tar] of crafted.entries()) {
      const path = join(dir, `crafted-${i}.tar`)
      writeFileSync(path, tar)
      await run('umoci', ['raw', 'add-layer', '--image', image, path])
    }
    await run('umoci', ['config', '--image', image, ...configArgs(config)])
    const ref = `${registry.url}/${name}:${tag}`
    const digestFile = join(dir, 'digest')
    const creds = registry.auth
      ? ['--dest-creds', `${registry.auth.username}:${registry.auth.password}`] : []
    await run('skopeo', ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false',
      ...creds, '--digestfile', digestFile, `oci:${image}`, `docker://${ref}`])
    return { ref, digest: readFileSync(digestFile, 'utf8').trim(), layers: 1 + layers.length + crafted.length }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
