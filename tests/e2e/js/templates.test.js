// Templates through the unmodified `e2b` SDK (Template.build, buildInBackground,
// getBuildStatus, exists, tags) and the unmodified E2B CLI (`e2b template list`,
// `e2b template delete`), against isoboxd's template API: builds from a built-in template
// and from a built one, ENV evaluated as E2B does, start and ready commands at every
// sandbox start, tags, tenancy, a rebuild that leaves running sandboxes alone, and the
// errors the SDK surfaces.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BuildError, Sandbox, Template, TemplateError, waitForFile } from 'e2b'
import { startDaemon } from './harness.js'

const run = promisify(execFile)
const CLI = join(dirname(fileURLToPath(import.meta.url)), 'node_modules', '.bin', 'e2b')
let daemon

before(async () => { daemon = await startDaemon({ args: ['--no-network'] }) })
after(async () => { await daemon?.stop() })

function tenantKey(name) {
  const out = execFileSync(process.env.ISOBOXD,
    ['--state-dir', daemon.stateDir, 'api-key', 'create', '--name', name], { encoding: 'utf8' })
  return out.trim().split('\t')[1]
}

async function sh(sandbox, cmd) {
  const result = await sandbox.commands.run(cmd)
  return result.stdout
}

function e2b(...args) {
  return run(process.execPath, [CLI, ...args], {
    env: { ...process.env, E2B_API_URL: daemon.url, E2B_API_KEY: daemon.apiKey, NO_COLOR: '1' },
  })
}

test('Template.build from base: ENV evaluated like E2B, logs streamed, a sandbox gets them', async () => {
  const logs = []
  const template = Template()
    .fromTemplate('base')
    .setEnvs({ GREETING: 'hello', PHRASE: '$GREETING world', LITERAL: '$(echo no)' })
  const info = await Template.build(template, 'env-demo', { onBuildLogs: (e) => logs.push(e) })
  assert.match(info.templateId, /^[a-z0-9]{20}$/)
  assert.match(info.buildId, /^[0-9a-f-]{36}$/)
  assert.deepEqual(info.tags, ['default'])
  const messages = logs.map((e) => e.message)
  assert.ok(messages.some((m) => m.includes('[builder 1/1] ENV')), messages.join('\n'))
  assert.ok(messages.some((m) => m.startsWith('Build finished')), messages.join('\n'))

  const sandbox = await Sandbox.create('env-demo')
  try {
    assert.equal(sandbox.templateId ?? info.templateId, info.templateId)
    const out = await sh(sandbox, 'echo "$GREETING|$PHRASE|$LITERAL"; whoami')
    assert.equal(out, 'hello|hello world|$(echo no)\nuser\n')
    // The create's own variables win over the template's.
    const own = await Sandbox.create('env-demo', { envs: { GREETING: 'mine' } })
    try {
      assert.equal(await sh(own, 'echo $GREETING'), 'mine\n')
    } finally { await own.kill() }
  } finally { await sandbox.kill() }
})

test('start and ready commands run at every sandbox start; the create waits for ready', async () => {
  const template = Template()
    .fromTemplate('base')
    .setStartCmd('sleep 0.3; date +%s%N > /tmp/started', waitForFile('/tmp/started'))
  await Template.build(template, 'start-ready')
  for (let i = 0; i < 2; i++) {
    const sandbox = await Sandbox.create('start-ready')
    try {
      // Ready means the file exists as the create answers: no polling here.
      assert.match(await sh(sandbox, 'cat /tmp/started'), /^\d+\n$/)
    } finally { await sandbox.kill() }
  }
})

test('buildInBackground, getBuildStatus with logsOffset, exists, a template from a built one', async () => {
  const parent = Template().fromTemplate('base').setEnvs({ LAYER: 'one' })
  await Template.build(parent, 'parent-tpl')
  const child = Template().fromTemplate('parent-tpl').setEnvs({ LAYER2: '${LAYER}-two' })
  const started = await Template.buildInBackground(child, 'child-tpl')
  let status
  let offset = 0
  const entries = []
  for (let i = 0; i < 200; i++) {
    status = await Template.getBuildStatus(started, { logsOffset: offset })
    entries.push(...status.logEntries)
    offset += status.logEntries.length
    if (status.status === 'ready' || status.status === 'error') break
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(status.status, 'ready', JSON.stringify(status))
  assert.equal(status.buildID ?? status.buildId, started.buildId)
  // The offset skips what was read: a read from the end is empty.
  const rest = await Template.getBuildStatus(started, { logsOffset: offset })
  assert.deepEqual(rest.logEntries, [])
  assert.ok(entries.every((e) => ['debug', 'info', 'warn', 'error'].includes(e.level)))
  assert.equal(await Template.exists('child-tpl'), true)
  assert.equal(await Template.exists('no-such-template'), false)
  const sandbox = await Sandbox.create('child-tpl')
  try {
    assert.equal(await sh(sandbox, 'echo $LAYER $LAYER2'), 'one one-two\n')
  } finally { await sandbox.kill() }
})

test('tags: build with tags, assign, list, remove; name:tag picks the build', async () => {
  const v1 = await Template.build(Template().fromTemplate('base').setEnvs({ V: '1' }),
    'tagged:v1')
  assert.deepEqual(v1.tags, ['v1'])
  const v2 = await Template.build(Template().fromTemplate('base').setEnvs({ V: '2' }),
    'tagged', { tags: ['v2', 'latest'] })
  assert.deepEqual(v2.tags.sort(), ['latest', 'v2'])
  const assigned = await Template.assignTags('tagged:v1', ['stable'])
  assert.equal(assigned.buildId, v1.buildId)
  const tags = await Template.getTags('tagged')
  const byTag = Object.fromEntries(tags.map((t) => [t.tag, t.buildId]))
  assert.equal(byTag.v1, v1.buildId)
  assert.equal(byTag.stable, v1.buildId)
  assert.equal(byTag.v2, v2.buildId)
  assert.ok(tags.every((t) => t.createdAt instanceof Date))
  for (const [ref, want] of [['tagged:stable', '1'], ['tagged:latest', '2']]) {
    const sandbox = await Sandbox.create(ref)
    try { assert.equal(await sh(sandbox, 'echo $V'), `${want}\n`) } finally { await sandbox.kill() }
  }
  await Template.removeTags('tagged', ['stable'])
  await assert.rejects(Sandbox.create('tagged:stable'), /has no tag 'stable'/)
  await assert.rejects(Template.removeTags('tagged', ['default']), /default/)
  // No build ever got `default`: the bare name has no build to start.
  await assert.rejects(Sandbox.create('tagged'), /no ready build/)
})

test('a rebuild changes new sandboxes only; a failed rebuild changes nothing', async () => {
  await Template.build(Template().fromTemplate('base').setEnvs({ GEN: 'first' }), 'rebuilt')
  const old = await Sandbox.create('rebuilt')
  try {
    await Template.build(Template().fromTemplate('base').setEnvs({ GEN: 'second' }), 'rebuilt')
    assert.equal(await sh(old, 'echo $GEN'), 'first\n')
    const fresh = await Sandbox.create('rebuilt')
    try { assert.equal(await sh(fresh, 'echo $GEN'), 'second\n') } finally { await fresh.kill() }
    // A build whose step fails: BuildError with the reason; the name keeps its build.
    await assert.rejects(
      Template.build(Template().fromTemplate('base').setEnvs({ BAD: '${X:?unset}' }), 'rebuilt'),
      (e) => e instanceof BuildError && /evaluating BAD failed/.test(e.message))
    const after = await Sandbox.create('rebuilt')
    try { assert.equal(await sh(after, 'echo $GEN'), 'second\n') } finally { await after.kill() }
  } finally { await old.kill() }
})

test('bad input: clear 4xx from the API, surfaced by the SDK', async () => {
  await assert.rejects(Template.build(Template().fromTemplate('no-such-parent'), 'orphan'),
    (e) => e instanceof BuildError && /fromTemplate 'no-such-parent'/.test(e.message))
  await assert.rejects(Template.build(Template().fromTemplate('base'), 'base'),
    /built-in template/)
  await assert.rejects(Template.build(Template().fromTemplate('base'), 'Bad Name!'),
    /name/)
  const res = await fetch(`${daemon.url}/v3/templates`, {
    method: 'POST',
    headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'x', cpuCount: 0 }),
  })
  assert.equal(res.status, 400)
  assert.match((await res.json()).message, /cpuCount/)
  const { templateID, buildID } = await (await fetch(`${daemon.url}/v3/templates`, {
    method: 'POST',
    headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'bad-steps' }),
  })).json()
  const start = await fetch(`${daemon.url}/v2/templates/${templateID}/builds/${buildID}`, {
    method: 'POST',
    headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ fromTemplate: 'base', steps: [{ type: 'FROBNICATE', args: [] }] }),
  })
  assert.equal(start.status, 400)
  assert.match((await start.json()).message, /steps\[0\]\.type/)
  const status = await fetch(`${daemon.url}/templates/${templateID}/builds/not-a-build/status`,
    { headers: { 'X-API-KEY': daemon.apiKey } })
  assert.equal(status.status, 404)
})

test('minFreeDiskMb: a sandbox of the template starts with that much free space; too much is refused', async () => {
  await Template.build(Template().fromTemplate('base').runCmd('true'), 'roomy', { minFreeDiskMb: 2048 })
  const sandbox = await Sandbox.create('roomy')
  try {
    const free = Number((await sandbox.commands.run("df -Pm / | awk 'NR==2 {print $4}'")).stdout)
    assert.ok(free >= 1900, `${free} MiB free`)
  } finally { await sandbox.kill() }
  await assert.rejects(
    Template.build(Template().fromTemplate('base').runCmd('true'), 'huge', { minFreeDiskMb: 70000 }),
    /minFreeDiskMb: at most 65536 MiB/)
})

test('tenancy: another key cannot use, rebuild or delete a private template', async () => {
  const alice = tenantKey('alice')
  const bob = tenantKey('bob')
  await Template.build(Template().fromTemplate('base').setEnvs({ OWNER: 'alice' }), 'alices',
    { apiKey: alice })
  assert.equal(await Template.exists('alices', { apiKey: bob }), true)  // 403: it exists
  await assert.rejects(Sandbox.create('alices', { apiKey: bob }), /not found/)
  await assert.rejects(Template.build(Template().fromTemplate('base'), 'alices', { apiKey: bob }),
    /taken by another API key/)
  const del = await fetch(`${daemon.url}/templates/alices`,
    { method: 'DELETE', headers: { 'X-API-KEY': bob } })
  assert.equal(del.status, 404)
  const sandbox = await Sandbox.create('alices', { apiKey: alice })
  await sandbox.kill()
})

test('RUN, WORKDIR, USER make layers: files in / and /usr, deletions, owners, a default user and directory', async () => {
  const logs = []
  const template = Template()
    .fromTemplate('base')
    .runCmd('mkdir -p /opt/app && echo built > /opt/app/version && rm /etc/debian_version', { user: 'root' })
    .runCmd('mkdir -p /usr/local/share/isobox-e2e && echo in-usr > /usr/local/share/isobox-e2e/f',
      { user: 'root' })
    .setUser('alice')
    .setWorkdir('/srv/work')
    .runCmd('echo "$(whoami) $(pwd)" > note; chmod 4755 note')
  await Template.build(template, 'layered', { onBuildLogs: (e) => logs.push(e.message) })
  const sandbox = await Sandbox.create('layered')
  try {
    assert.equal(await sh(sandbox, 'cat /opt/app/version /usr/local/share/isobox-e2e/f'),
      'built\nin-usr\n')
    assert.equal(await sh(sandbox, 'test -e /etc/debian_version && echo present || echo gone'), 'gone\n')
    assert.equal(await sh(sandbox, 'whoami; pwd; cat note; stat -c "%U %a" note'),
      'alice\n/srv/work\nalice /srv/work\nalice 4755\n')
    // The layers are read-only below the sandbox's own upper: it may change its copy.
    assert.equal(await sh(sandbox, 'echo mine > note && cat note'), 'mine\n')
  } finally { await sandbox.kill() }
  const again = await Sandbox.create('layered')
  try {
    assert.equal(await sh(again, 'cat note'), 'alice /srv/work\n')
  } finally { await again.kill() }

  // Unchanged: every step comes from the cache.
  const rebuilt = []
  await Template.build(template, 'layered', { onBuildLogs: (e) => rebuilt.push(e.message) })
  const steps = rebuilt.filter((m) => m.includes('[builder '))
  assert.equal(steps.length, 5, rebuilt.join('\n'))
  assert.ok(steps.every((m) => m.startsWith('CACHED ')), steps.join('\n'))
  // skipCache: none does.
  const forced = []
  await Template.build(template, 'layered', { skipCache: true, onBuildLogs: (e) => forced.push(e.message) })
  assert.ok(forced.filter((m) => m.includes('[builder ')).every((m) => !m.startsWith('CACHED ')),
    forced.join('\n'))
  // A changed step rebuilds from there on; the steps before it stay cached.
  const changed = []
  await Template.build(Template().fromTemplate('base')
    .runCmd('mkdir -p /opt/app && echo built > /opt/app/version && rm /etc/debian_version', { user: 'root' })
    .runCmd('echo changed > /tmp/x'), 'layered-2', { onBuildLogs: (e) => changed.push(e.message) })
  const changedSteps = changed.filter((m) => m.includes('[builder '))
  assert.ok(changedSteps[0].startsWith('CACHED '), changedSteps.join('\n'))
  assert.ok(!changedSteps[1].startsWith('CACHED '), changedSteps.join('\n'))
})

test('a failing RUN fails the build with its exit status and output; the step is named', async () => {
  const logs = []
  await assert.rejects(
    Template.build(Template().fromTemplate('base').runCmd('echo about to fail; exit 3'), 'fails',
      { onBuildLogs: (e) => logs.push(e) }),
    (e) => e instanceof BuildError && /exit status 3/.test(e.message))
  assert.ok(logs.some((e) => e.message === 'about to fail'), logs.map((e) => e.message).join('\n'))
  assert.equal(await Template.exists('fails'), true)
  await assert.rejects(Sandbox.create('fails'), /no ready build/)
})

// A build context like a user's project directory.
function projectDir() {
  const dir = mkdtempSync(join(tmpdir(), 'isobox-template-ctx-'))
  mkdirSync(join(dir, 'app', 'lib'), { recursive: true })
  writeFileSync(join(dir, 'app', 'main.py'), 'print("hi")\n')
  writeFileSync(join(dir, 'app', 'lib', 'util.py'), 'X = 1\n')
  writeFileSync(join(dir, 'app', 'secret.env'), 'TOKEN=1\n')
  symlinkSync('main.py', join(dir, 'app', 'entry.py'))
  writeFileSync(join(dir, 'one.txt'), 'one\n')
  writeFileSync(join(dir, 'run.sh'), '#!/bin/sh\necho run\n')
  writeFileSync(join(dir, '.dockerignore'), 'app/secret.env\n')
  return dir
}

test('COPY: the SDK uploads the files once; directories merge, files land, owners and modes', async () => {
  const dir = projectDir()
  try {
    const template = Template({ fileContextPath: dir })
      .fromTemplate('base')
      .copy('app', '/opt/app')
      .copy('one.txt', '/data/')
      .copy('run.sh', '/usr/local/bin/run-it', { mode: 0o755, user: 'root' })
      .setWorkdir('/srv')
      .copy('one.txt', 'relative.txt')
    const logs = []
    await Template.build(template, 'copied', { onBuildLogs: (e) => logs.push(e.message) })
    const sandbox = await Sandbox.create('copied')
    try {
      assert.equal(await sh(sandbox, 'cat /opt/app/main.py /opt/app/lib/util.py /data/one.txt /srv/relative.txt'),
        'print("hi")\nX = 1\none\none\n')
      assert.equal(await sh(sandbox, 'readlink /opt/app/entry.py; test -e /opt/app/secret.env && echo leaked || echo ignored'),
        'main.py\nignored\n')
      assert.equal(await sh(sandbox, 'stat -c "%U %a" /opt/app/main.py /usr/local/bin/run-it; run-it'),
        'user 644\nroot 755\nrun\n')
      assert.equal(await sh(sandbox, 'ls -a / | grep -c isobox-copy || true'), '0\n')
    } finally { await sandbox.kill() }
    // The same files again: the upload is skipped (present), the steps are cached.
    const again = []
    await Template.build(template, 'copied', { onBuildLogs: (e) => again.push(e.message) })
    assert.ok(again.filter((m) => m.includes('[builder ')).every((m) => m.startsWith('CACHED ')),
      again.join('\n'))
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test('uploads: the URL carries its own authorization; a forged or reused-for-another-hash URL is refused', async () => {
  const { templateID } = await (await fetch(`${daemon.url}/v3/templates`, {
    method: 'POST', headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'uploads' }),
  })).json()
  const hash = 'a'.repeat(64)
  const files = await (await fetch(`${daemon.url}/templates/${templateID}/files/${hash}`,
    { headers: { 'X-API-KEY': daemon.apiKey } })).json()
  assert.equal(files.present, false)
  assert.ok(files.url.startsWith(`${daemon.url}/`), files.url)
  const other = files.url.replace(hash, 'b'.repeat(64))
  assert.equal((await fetch(other, { method: 'PUT', body: 'x' })).status, 403)
  const forged = files.url.replace(/signature=[0-9a-f]+/, 'signature=' + '0'.repeat(64))
  assert.equal((await fetch(forged, { method: 'PUT', body: 'x' })).status, 403)
  // Not an archive: refused, nothing kept.
  const bad = await fetch(files.url, { method: 'PUT', body: 'not a tar at all' })
  assert.equal(bad.status, 400)
  assert.match((await bad.json()).message, /archive/)
  const still = await (await fetch(`${daemon.url}/templates/${templateID}/files/${hash}`,
    { headers: { 'X-API-KEY': daemon.apiKey } })).json()
  assert.equal(still.present, false)
})

test('the E2B CLI builds a Dockerfile: template create (FROM e2bdev/base, COPY, RUN, ENV, WORKDIR, USER)', async () => {
  const dir = projectDir()
  try {
    writeFileSync(join(dir, 'e2b.Dockerfile'), [
      'FROM e2bdev/base',
      'ENV APP_HOME=/opt/site',
      'RUN mkdir -p $APP_HOME && echo from-run > $APP_HOME/run.txt',
      'COPY app $APP_HOME/app',
      'WORKDIR /opt/site',
      'USER user',
      '',
    ].join('\n'))
    const { stdout } = await e2b('template', 'create', 'from-dockerfile', '-p', dir)
    assert.match(stdout, /from-dockerfile/)
    const sandbox = await Sandbox.create('from-dockerfile')
    try {
      assert.equal(await sh(sandbox, 'pwd; whoami; cat run.txt app/main.py; echo $APP_HOME'),
        '/opt/site\nuser\nfrom-run\nprint("hi")\n/opt/site\n')
    } finally { await sandbox.kill() }
  } finally { rmSync(dir, { recursive: true, force: true }) }
})

test('the E2B CLI: template list shows builds; template delete -y removes one, its sandboxes run on', async () => {
  await Template.build(Template().fromTemplate('base').setEnvs({ K: 'v' })
    .runCmd('echo layer > /tmp/../opt/cli-file', { user: 'root' }), 'cli-demo')
  const { stdout } = await e2b('template', 'list', '--format', 'json')
  const listed = JSON.parse(stdout)
  const entry = listed.find((t) => (t.aliases ?? []).includes('cli-demo'))
  assert.ok(entry, stdout)
  assert.equal(entry.buildStatus, 'ready')
  const running = await Sandbox.create('cli-demo')
  try {
    await e2b('template', 'delete', 'cli-demo', '-y')
    assert.equal(await Template.exists('cli-demo'), false)
    assert.equal(await sh(running, 'echo $K; cat /opt/cli-file'), 'v\nlayer\n')
    await assert.rejects(Sandbox.create('cli-demo'), /not found/)
  } finally { await running.kill() }
})
