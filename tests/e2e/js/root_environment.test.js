// Root that administers its own sandbox, and the environment agents expect (issue 18),
// through the unmodified `e2b` SDK against a real isoboxd: sudo for `user`, root's
// capabilities inside its user namespace, package managers that install into the sandbox
// only, the usual tools, sandbox.git, and limits that match what the sandbox reports.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { Sandbox } from 'e2b'
import { startDaemon } from './harness.js'

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  sandbox = await Sandbox.create()
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

// The command's result whether it succeeded or not.
async function run(cmd, opts = {}) {
  return sandbox.commands.run(cmd, opts).catch((error) => {
    if (error.exitCode === undefined) throw error
    return error
  })
}

async function ok(cmd, opts = {}) {
  const result = await run(cmd, opts)
  assert.equal(result.exitCode, 0, `${cmd}: ${result.stderr}`)
  return result.stdout.trim()
}

test('sudo: user runs commands as root, without a password', async () => {
  assert.equal(await ok('command -v sudo'), '/usr/bin/sudo')
  assert.equal(await ok('sudo -n id -u'), '0')
  assert.equal(await ok('sudo -u user id -un'), 'user')
  assert.equal(await ok("sudo sh -c 'echo $SUDO_USER $USER $HOME'"), 'user root /root')
  assert.equal(await ok('echo piped | sudo cat'), 'piped')
  const failed = await run('sudo sh -c "exit 3"')
  assert.equal(failed.exitCode, 3)
  const missing = await run('sudo no-such-command')
  assert.equal(missing.exitCode, 1)
  assert.match(missing.stderr, /sudo: no-such-command: command not found/)
  const refused = await run('sudo -g root true')
  assert.equal(refused.exitCode, 1)
  assert.match(refused.stderr, /not supported/)
  assert.equal(await ok('sudo -l | tail -n1'), '(ALL : ALL) NOPASSWD: ALL')
})

test('su: root becomes user', async () => {
  assert.equal(await ok("su user -c 'id -un'", { user: 'root' }), 'user')
})

test('root administers its own sandbox', async () => {
  const root = { user: 'root' }
  await ok('touch /tmp/f && chown user:user /tmp/f', root)
  assert.equal(await ok('stat -c %U:%G /tmp/f'), 'user:user')
  await ok('echo "# by root" >> /home/user/.bashrc && ln -sf /etc/hostname /home/user/link', root)
  assert.equal(await ok('tail -n1 /home/user/.bashrc'), '# by root')
  await ok('echo hello > /etc/motd && chmod 600 /etc/motd', root)
  // A file on the read-only lower layers: the chown copies it up into this sandbox only.
  await ok('chown user /usr/bin/env', root)
  assert.equal(await ok('stat -c %U /usr/bin/env'), 'user')
  assert.notEqual((await import('node:fs')).statSync('/usr/bin/env').uid, 1000)
  // Processes of other users in the sandbox: root may signal them.
  await ok('sleep 60 & echo $! > /tmp/sleeper')
  await ok('kill $(cat /tmp/sleeper)', root)
})

test('apt-get installs a local .deb into this sandbox only', async () => {
  await ok(`set -e
    mkdir -p /tmp/deb/DEBIAN /tmp/deb/usr/bin
    printf '#!/bin/sh\\necho isobox-hello works\\n' > /tmp/deb/usr/bin/isobox-hello
    chmod 755 /tmp/deb/usr/bin/isobox-hello
    printf 'Package: isobox-hello\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: t <t@t>\\nDescription: test\\n' > /tmp/deb/DEBIAN/control
    dpkg-deb --build --root-owner-group /tmp/deb /tmp/isobox-hello.deb`)
  await ok('sudo apt-get install -y -q /tmp/isobox-hello.deb')
  assert.equal(await ok('isobox-hello'), 'isobox-hello works')
  assert.match(await ok('dpkg -s isobox-hello'), /Status: install ok installed/)
  const other = await Sandbox.create()
  try {
    const result = await other.commands.run('dpkg -s isobox-hello', { user: 'root' })
      .catch((error) => error)
    assert.equal(result.exitCode, 1)
  } finally {
    await other.kill()
  }
  assert.equal(existsSync('/usr/bin/isobox-hello'), false)
})

test('pip --user, pip in a venv and npm install work as user', async () => {
  await ok(`set -e; cd /tmp; python3 - <<'PY'
import zipfile
with zipfile.ZipFile('isoboxdemo-1.0-py3-none-any.whl', 'w') as z:
    z.writestr('isoboxdemo/__init__.py', 'ANSWER = 42\\n')
    z.writestr('isoboxdemo-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: isoboxdemo\\nVersion: 1.0\\n')
    z.writestr('isoboxdemo-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')
    z.writestr('isoboxdemo-1.0.dist-info/RECORD', '')
PY`)
  await ok('pip install --user --no-index /tmp/isoboxdemo-1.0-py3-none-any.whl')
  assert.equal(await ok('cd / && python3 -c "import isoboxdemo; print(isoboxdemo.ANSWER)"'), '42')
  await ok('python3 -m venv /home/user/venv && /home/user/venv/bin/pip install -q --no-index /tmp/isoboxdemo-1.0-py3-none-any.whl')
  assert.equal(await ok('/home/user/venv/bin/python -c "import isoboxdemo, sys; print(sys.prefix)"'),
    '/home/user/venv')
  await ok(`set -e; mkdir -p /home/user/lib /home/user/app
    echo '{"name":"isobox-lib","version":"1.0.0","main":"index.js"}' > /home/user/lib/package.json
    echo 'module.exports = 7' > /home/user/lib/index.js
    cd /home/user/app
    echo '{"name":"app","version":"1.0.0","dependencies":{"isobox-lib":"file:../lib"}}' > package.json
    npm install --offline --no-audit --no-fund`)
  assert.equal(await ok('cd /home/user/app && node -e "console.log(require(\'isobox-lib\'))"'), '7')
})

test('the tools agents reach for are there, with LANG=C.UTF-8', async () => {
  for (const tool of ['git', 'curl', 'wget', 'jq', 'unzip', 'zip', 'make', 'gcc', 'g++', 'python3',
    'pip', 'node', 'npm', 'ps', 'top', 'ip', 'less', 'nano']) {
    assert.notEqual(await ok(`command -v ${tool}`), '', tool)
  }
  assert.notEqual(await ok('command -v vim || command -v vi'), '')
  assert.equal(await ok('echo $LANG'), 'C.UTF-8')
  assert.equal(await ok("printf 'é' | wc -m"), '1')
})

test('sandbox.git runs git in the sandbox', async () => {
  const repo = '/home/user/repo'
  await sandbox.git.init(repo)
  await ok(`cd ${repo} && git config user.email a@b && git config user.name A && echo x > f && git add f && git commit -qm first`)
  await sandbox.git.createBranch(repo, 'feature')
  const branches = await sandbox.git.branches(repo)
  assert.ok(branches.branches.includes('feature'), JSON.stringify(branches))
  await ok(`echo y > ${repo}/g`)
  const status = await sandbox.git.status(repo)
  assert.ok(status.fileStatus.some((f) => f.name === 'g'), JSON.stringify(status))
  await sandbox.git.clone(`file://${repo}`, { path: '/home/user/clone' })
  assert.equal(await ok('cat /home/user/clone/f'), 'x')
})

test('limits: nproc, /proc/meminfo, /proc/cpuinfo and the cgroup files show the sandbox', async () => {
  const info = await sandbox.getInfo()
  assert.equal(await ok('nproc'), String(info.cpuCount))
  const memTotal = Number((await ok("awk '/^MemTotal/ {print $2}' /proc/meminfo")))
  assert.equal(memTotal, info.memoryMB * 1024)
  assert.equal(await ok('grep -c ^processor /proc/cpuinfo'), String(info.cpuCount))
  const max = await ok('cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes')
  assert.equal(Number(max), info.memoryMB * 1024 * 1024)
})
