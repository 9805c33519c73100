// What other host users can learn about sandboxes: not their ids. An id routes traffic to
// a sandbox's user ports without any token (as in E2B), so an unprivileged host user who
// reads one can reach whatever the sandbox serves. Checked as `nobody` (setpriv: uid and
// gid 65534, no groups) against everything such a user can read: the cgroup trees, every
// process's /proc/<pid>/cgroup, mountinfo and cmdline, the unix socket paths in
// /proc/net/unix, the loop devices' backing files.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync }
  from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Sandbox, privateName, startDaemon } from './sdk.js'

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  // The code interpreter's template: its socket is one more host path of the sandbox.
  sandbox = await Sandbox.create('code-interpreter-v1')
  await sandbox.commands.run('sleep 600', { background: true })
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

// Runs argv as nobody; never throws.
function asNobody(argv) {
  return new Promise((resolve) => {
    execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...argv],
      { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
        resolve({ code: error ? error.code ?? 1 : 0, stdout, stderr })
      })
  })
}

// The directories whose entries name sandboxes: isobox in the v2 tree or in each v1
// hierarchy.
function cgroupParents() {
  const parents = []
  if (existsSync('/sys/fs/cgroup/isobox/cgroup.procs')) parents.push('/sys/fs/cgroup/isobox')
  for (const entry of readdirSync('/sys/fs/cgroup')) {
    const dir = `/sys/fs/cgroup/${entry}/isobox`
    if (existsSync(`${dir}/cgroup.procs`)) parents.push(dir)
  }
  return parents
}

test('the cgroup parents are root-only: other host users cannot list them', async () => {
  const name = privateName(sandbox.sandboxId)
  const parents = cgroupParents().filter((dir) => existsSync(join(dir, name)))
  assert.ok(parents.length > 0, 'the sandbox has cgroups')
  for (const dir of parents) {
    assert.equal(statSync(dir).mode & 0o7777, 0o700, dir)
    const listed = await asNobody(['ls', dir])
    assert.notEqual(listed.code, 0, `${dir}: ${listed.stdout}`)
    assert.match(listed.stderr, /Permission denied/)
    const inside = await asNobody(['cat', join(dir, name, 'cgroup.procs')])
    assert.notEqual(inside.code, 0)
    assert.match(inside.stderr, /Permission denied/)
  }
  const state = await asNobody(['ls', join(daemon.stateDir, 'sandboxes')])
  assert.notEqual(state.code, 0)
  assert.match(state.stderr, /Permission denied/)
})

test('nothing other host users can read names a sandbox id', async () => {
  // The pattern comes from a file: on grep's command line it would be in its own cmdline.
  const dir = mkdtempSync(join(tmpdir(), 'isobox-host-view-'))
  try {
    chmodSync(dir, 0o755)
    const patterns = join(dir, 'patterns')
    writeFileSync(patterns, `${sandbox.sandboxId}\n`, { mode: 0o644 })
    const script = 'grep -l -F -f "$0" /proc/[0-9]*/cgroup /proc/[0-9]*/mountinfo ' +
      '/proc/[0-9]*/cmdline /proc/net/unix /sys/block/loop*/loop/backing_file 2>/dev/null; ' +
      'ls -R /sys/fs/cgroup 2>/dev/null | grep -F -f "$0"; true'
    const found = await asNobody(['sh', '-c', script, patterns])
    assert.equal(found.stdout, '', 'readable by others and naming the sandbox id')
    // The search reaches the sandbox's processes: it finds the name their cgroups have.
    const control = join(dir, 'control')
    writeFileSync(control, `${privateName(sandbox.sandboxId)}\n`, { mode: 0o644 })
    const named = await asNobody(['sh', '-c', script, control])
    assert.match(named.stdout, /^\/proc\/\d+\/cgroup$/m)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
