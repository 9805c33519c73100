// The peers' command lines, shared by bench/run (lib/run.mjs) and bench/create.mjs, so
// both measure the same thing.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const BWRAP = ['--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr',
  '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64',
  '/lib64', '--symlink', 'usr/sbin', '/sbin', '--proc', '/proc', '--dev', '/dev',
  '--tmpfs', '/tmp', '/bin/true']
export const UNSHARE = ['--user', '--map-root-user', '--pid', '--fork', '--mount', '--net', '--uts',
  '--ipc', '/bin/true']

// An OCI bundle (the runtime's own `spec`) whose root is an empty directory with the host's
// /usr bind-mounted read-only, running /bin/true: the same filesystem view bwrap gets.
export function ociBundle(runtime) {
  const bundle = mkdtempSync(join(tmpdir(), `isobox-bench-${runtime}-`))
  const rootfs = join(bundle, 'rootfs')
  mkdirSync(join(rootfs, 'usr'), { recursive: true })
  for (const link of ['bin', 'lib', 'lib64', 'sbin']) {
    spawnSync('ln', ['-s', `usr/${link}`, join(rootfs, link)])
  }
  const made = spawnSync(runtime, ['spec', '--bundle', bundle], { encoding: 'utf8' })
  if (made.status !== 0) throw new Error(`${runtime} spec: ${made.stderr}`)
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'))
  spec.process.terminal = false
  spec.process.args = ['/bin/true']
  spec.root = { path: 'rootfs', readonly: true }
  spec.mounts.push({ destination: '/usr', type: 'bind', source: '/usr',
    options: ['rbind', 'ro', 'nosuid', 'nodev'] })
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec))
  return bundle
}
