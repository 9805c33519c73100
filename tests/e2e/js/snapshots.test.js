// Snapshots and forks (issue 21): createSnapshot takes a running sandbox's processes,
// memory and files while it runs on; every sandbox created from the snapshot id starts
// with them, independent of the others; fork makes `count` such sandboxes at once, each
// with its own id, token and address. Listing, deleting and bad input as E2B answers.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { agentPids, interpreterFetch, privateName, startDaemon, until } from './harness.js'

let daemon
before(async () => { daemon = await startDaemon({ onExit: 'keep' }) })
after(async () => { await daemon?.stop() })

function api(path, init = {}) {
  return fetch(`${daemon.url}${path}`, {
    ...init,
    headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json', ...(init.headers ?? {}) },
  })
}

// A counter that ticks every 50 ms into /tmp/counter, started by root in the background:
// a process whose memory (the count) only a checkpoint can keep.
const COUNTER = `nohup bash -c 'n=0; while true; do n=$((n+1)); echo $n > /tmp/counter; sleep 0.05; done' >/dev/null 2>&1 &`

// 0 until the counter has written its first count.
async function count(sandbox) {
  return Number((await sandbox.commands.run('cat /tmp/counter 2>/dev/null || echo 0')).stdout.trim())
}

test('a snapshot starts independent sandboxes with its processes, memory and files', async () => {
  const original = await Sandbox.create({ timeoutMs: 600000, envs: { FROM: 'original' } })
  try {
    await original.commands.run(COUNTER)
    await original.files.write('/home/user/state.txt', 'before the snapshot')
    await until('the counter runs', async () => (await count(original)) > 5)

    const snapshot = await original.createSnapshot({ name: 'counter-snap' })
    assert.equal(snapshot.snapshotId, 'counter-snap:default')
    assert.deepEqual(snapshot.names, ['counter-snap:default'])
    // The original runs on, unchanged.
    assert.equal((await original.getInfo()).state, 'running')
    const before = await count(original)
    await until('the original counts on', async () => (await count(original)) > before)
    await original.files.write('/home/user/state.txt', 'after the snapshot')

    const a = await Sandbox.create(snapshot.snapshotId, { timeoutMs: 120000, envs: { CLONE: 'a' } })
    const b = await Sandbox.create(snapshot.snapshotId, { timeoutMs: 120000 })
    try {
      for (const clone of [a, b]) {
        assert.notEqual(clone.sandboxId, original.sandboxId)
        assert.equal(await clone.files.read('/home/user/state.txt'), 'before the snapshot')
        // The counter process came back with its count and goes on from it.
        const first = await count(clone)
        assert.ok(first > 5, `count ${first}`)
        await until('the clone counts on', async () => (await count(clone)) > first)
        assert.equal((await clone.commands.run('hostname')).stdout.trim(), clone.sandboxId)
        assert.equal((await clone.commands.run('echo $FROM')).stdout, 'original\n')
        assert.notEqual(clone.envdAccessToken, original.envdAccessToken)
        // In its own groups, under its own limits: its envd in its agent group, and its
        // memory charged to it.
        assert.equal(agentPids(clone.sandboxId).length, 1)
        const charged = Number(readFileSync(
          `/sys/fs/cgroup/memory/isobox/${privateName(clone.sandboxId)}/memory.usage_in_bytes`, 'utf8'))
        assert.ok(charged > 1 << 20, `charged ${charged}`)
        // Its cgroup namespace is rooted at its own groups: it sees them as the original
        // sees its own (rooted at the original's, it would see "/../../<name>/user").
        const groups = (await clone.commands.run('cat /proc/self/cgroup')).stdout
        assert.equal(groups, (await original.commands.run('cat /proc/self/cgroup')).stdout)
        assert.ok(!groups.includes('isobox'), groups)
      }
      assert.equal((await a.commands.run('echo $CLONE')).stdout, 'a\n')
      // Each diverges on its own.
      await a.files.write('/home/user/state.txt', 'written in a')
      assert.equal(await b.files.read('/home/user/state.txt'), 'before the snapshot')
      assert.equal(await original.files.read('/home/user/state.txt'), 'after the snapshot')
      await a.commands.run('pkill -f "n=\\$((n+1))" || true')
      const bCount = await count(b)
      await until('b counts on after a stopped', async () => (await count(b)) > bCount)
      // Another sandbox's token does not open a clone.
      const foreign = await fetch(`${process.env.E2B_SANDBOX_URL}/files?path=/home/user/state.txt`, {
        headers: { 'E2b-Sandbox-Id': b.sandboxId, 'E2b-Sandbox-Port': '49983',
                   'X-Access-Token': original.envdAccessToken },
      })
      assert.equal(foreign.status, 401)

      // Listed as E2B lists them, by sandbox and by name.
      const listed = await Sandbox.listSnapshots({ sandboxId: original.sandboxId }).nextItems()
      assert.deepEqual(listed.map((s) => s.snapshotId), ['counter-snap:default'])
      const byName = await Sandbox.listSnapshots({ name: 'counter-snap' }).nextItems()
      assert.equal(byName.length, 1)
      // One name, one snapshot.
      const again = await api(`/sandboxes/${original.sandboxId}/snapshots`, {
        method: 'POST', body: JSON.stringify({ name: 'counter-snap' }),
      })
      assert.equal(again.status, 409, await again.text())

      // Deleted: unlisted and no new sandbox from it, while its sandboxes keep running.
      const layerDir = join(daemon.stateDir, 'snapshots')
      const [dirName] = readdirSync(layerDir)
      assert.equal(statSync(join(layerDir, dirName)).mode & 0o777, 0o700)
      assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), true)
      assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), false)
      assert.deepEqual(await Sandbox.listSnapshots({ sandboxId: original.sandboxId }).nextItems(), [])
      await assert.rejects(Sandbox.create(snapshot.snapshotId), /not found/i)
      assert.equal(existsSync(join(layerDir, dirName, 'images')), false)
      assert.equal(await b.files.read('/home/user/state.txt'), 'before the snapshot')
      await a.kill()
      await b.kill()
      // Its layer went with its last sandbox.
      await until('the snapshot directory is gone', async () => !existsSync(join(layerDir, dirName)))
    } finally {
      await a.kill().catch(() => {})
      await b.kill().catch(() => {})
    }
  } finally {
    await original.kill()
  }
})

test('fork makes count sandboxes from one checkpoint; the original keeps its id and end', async () => {
  const original = await Sandbox.create({ timeoutMs: 600000 })
  try {
    await original.commands.run(COUNTER)
    await original.files.write('/home/user/fork.txt', 'shared start')
    await until('the counter runs', async () => (await count(original)) > 3)
    const endBefore = (await original.getInfo()).endAt
    const forks = await original.fork({ count: 3, timeoutMs: 120000 })
    assert.equal(forks.length, 3)
    const ids = new Set()
    const addresses = new Set()
    try {
      for (const fork of forks) {
        assert.ok(!(fork instanceof Error), String(fork))
        ids.add(fork.sandboxId)
        assert.equal(await fork.files.read('/home/user/fork.txt'), 'shared start')
        const first = await count(fork)
        await until('the fork counts on', async () => (await count(fork)) > first)
        addresses.add((await fork.commands.run("hostname -I | awk '{print $1}'")).stdout.trim())
        const info = await fork.getInfo()
        assert.equal(info.templateId, (await original.getInfo()).templateId)
      }
      assert.equal(ids.size, 3)
      assert.ok(!ids.has(original.sandboxId))
      assert.equal(addresses.size, 3)
      const after = await original.getInfo()
      assert.equal(after.state, 'running')
      assert.equal(after.endAt.getTime(), endBefore.getTime())
      // A fork pauses and resumes as any sandbox: with its memory, and with its files only.
      const [first] = forks
      await first.pause()
      const resumed = await Sandbox.connect(first.sandboxId)
      const counted = await count(resumed)
      await until('the resumed fork counts on', async () => (await count(resumed)) > counted)
      const files = await api(`/sandboxes/${first.sandboxId}/pause`, {
        method: 'POST', body: JSON.stringify({ memory: false }) })
      assert.equal(files.status, 204, await files.text())
      const respawned = await Sandbox.connect(first.sandboxId)
      assert.equal(await respawned.files.read('/home/user/fork.txt'), 'shared start')
      // A fork's snapshot is not listed.
      assert.deepEqual(await Sandbox.listSnapshots({ sandboxId: original.sandboxId }).nextItems(), [])
    } finally {
      for (const fork of forks) if (!(fork instanceof Error)) await fork.kill()
    }
    await until('the fork snapshot is gone', async () =>
      readdirSync(join(daemon.stateDir, 'snapshots')).length === 0)
  } finally {
    await original.kill()
  }
})

// A shell loop that appends its count to a file on the disk and runs /bin/true (a vfork
// each time): processes born all the time, and a file that says whether the copy of the
// disk matches the memory (a copy later than the dump would hold counts the restored shell
// writes again).
const TICKS = `cat > /home/user/tick.sh <<'EOF'
n=0
while :; do n=$((n+1)); echo $n >> /home/user/ticks; /bin/true; done
EOF
nohup sh /home/user/tick.sh >/dev/null 2>&1 &`

async function ticks(sandbox) {
  return Number((await sandbox.commands.run('wc -l < /home/user/ticks')).stdout.trim())
}

// Stops the loop ([t]: not the pattern's own shell) and checks the file counts 1, 2, ...
async function assertTicksInOrder(sandbox) {
  await sandbox.commands.run("pkill -f '[t]ick.sh'; sleep 0.1")
  const check = await sandbox.commands.run(
    'awk \'NR != $1 { print NR ": " $0; bad = 1; exit } END { exit bad }\' /home/user/ticks')
  assert.equal(check.exitCode, 0)
}

test('a shell forking all the time: snapshots, forks and pauses keep its files as its memory', async () => {
  const original = await Sandbox.create({ timeoutMs: 600000 })
  try {
    await original.commands.run(TICKS)
    await until('it ticks', async () => (await ticks(original)) > 100)
    const taken = []
    for (let i = 0; i < 3; i++) taken.push(await original.createSnapshot())
    const clone = await Sandbox.create(taken[2].snapshotId, { timeoutMs: 120000 })
    const forks = await original.fork({ count: 2, timeoutMs: 120000 })
    try {
      for (const sandbox of [clone, ...forks]) {
        assert.ok(!(sandbox instanceof Error), String(sandbox))
        const first = await ticks(sandbox)
        await until('the restored loop ticks on', async () => (await ticks(sandbox)) > first)
        await assertTicksInOrder(sandbox)
      }
      for (let i = 0; i < 2; i++) {
        await original.pause()
        await Sandbox.connect(original.sandboxId)
        const first = await ticks(original)
        await until('the resumed loop ticks on', async () => (await ticks(original)) > first)
      }
      await assertTicksInOrder(original)
    } finally {
      await clone.kill()
      for (const fork of forks) if (!(fork instanceof Error)) await fork.kill()
      for (const snapshot of taken) await Sandbox.deleteSnapshot(snapshot.snapshotId)
    }
  } finally {
    await original.kill()
  }
})

test('a code interpreter sandbox snapshots and forks with its kernels; each clone has its own token', async () => {
  const original = await CodeSandbox.create({ timeoutMs: 600000 })
  try {
    await original.runCode('import pandas as pd\ndf = pd.DataFrame({"a": [1, 2, 3]})\nn = 10')
    await original.runCode('let k = 7', { language: 'js' })
    const snapshot = await original.createSnapshot()
    const clone = await CodeSandbox.create(snapshot.snapshotId, { timeoutMs: 120000 })
    const [fork] = await original.fork({ count: 1, timeoutMs: 120000 })
    try {
      assert.ok(!(fork instanceof Error), String(fork))
      const forked = await CodeSandbox.connect(fork.sandboxId)
      for (const sandbox of [clone, forked]) {
        assert.equal((await sandbox.runCode('n += 1\nint(df.a.sum()) + n')).text, '17')
        assert.equal((await sandbox.runCode('k * 6', { language: 'js' })).text, '42')
        // The clone's interpreter takes the clone's token, and never the original's.
        const foreign = await interpreterFetch(sandbox, '/execute', {
          method: 'POST', body: JSON.stringify({ code: '1' }),
          headers: { 'X-Access-Token': original.envdAccessToken } })
        assert.equal(foreign.status, 401)
      }
      // Each went on alone: the original's n is still 10.
      assert.equal((await original.runCode('n')).text, '10')
    } finally {
      await clone.kill()
      if (!(fork instanceof Error)) await Sandbox.kill(fork.sandboxId)
      await Sandbox.deleteSnapshot(snapshot.snapshotId)
    }
  } finally {
    await original.kill()
  }
})

test('bad input: counts, names, unknown and paused sandboxes', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 120000 })
  try {
    for (const count of [0, 101, 'two', 1.5]) {
      const res = await api(`/sandboxes/${sandbox.sandboxId}/fork`, {
        method: 'POST', body: JSON.stringify({ count }),
      })
      assert.equal(res.status, 400)
      assert.match((await res.json()).message, /'count' must be an integer from 1 to 100/)
    }
    const unknownField = await api(`/sandboxes/${sandbox.sandboxId}/fork`, {
      method: 'POST', body: JSON.stringify({ count: 1, region: 'eu' }),
    })
    assert.equal(unknownField.status, 400)
    assert.match((await unknownField.json()).message, /unknown field 'region'/)
    for (const name of ['', 'Has Caps', '-dash', 'x'.repeat(64)]) {
      const res = await api(`/sandboxes/${sandbox.sandboxId}/snapshots`, {
        method: 'POST', body: JSON.stringify({ name }),
      })
      assert.equal(res.status, 400, name)
      assert.match((await res.json()).message, /'name' must be 1-63 characters/)
    }
    await assert.rejects(Sandbox.createSnapshot('nosuchsandbox0000000'), /not found/i)
    await assert.rejects(Sandbox.fork('nosuchsandbox0000000', { count: 2 }), /not found/i)
    const list = await api('/snapshots?limit=0')
    assert.equal(list.status, 400)
    assert.equal((await api('/snapshots?color=red')).status, 400)
    // A paused sandbox: resume it first.
    await sandbox.pause()
    const paused = await api(`/sandboxes/${sandbox.sandboxId}/snapshots`, { method: 'POST', body: '{}' })
    assert.equal(paused.status, 409)
    assert.match((await paused.json()).message, /is paused/)
    const pausedFork = await api(`/sandboxes/${sandbox.sandboxId}/fork`, { method: 'POST', body: '{}' })
    assert.equal(pausedFork.status, 409)
  } finally {
    await sandbox.kill()
  }
})

test('a snapshot that does not fit on the host is refused: 507, the sandbox runs on', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 120000 })
  const snapshots = join(daemon.stateDir, 'snapshots')
  mkdirSync(snapshots, { recursive: true })
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', snapshots])
  try {
    await sandbox.commands.run('nohup sleep 100003 >/dev/null 2>&1 &')
    const res = await api(`/sandboxes/${sandbox.sandboxId}/snapshots`, { method: 'POST', body: '{}' })
    assert.equal(res.status, 507)
    assert.match((await res.json()).message, /not enough room on the host.*keeps running/)
    const fork = await api(`/sandboxes/${sandbox.sandboxId}/fork`, { method: 'POST', body: '{"count":2}' })
    assert.equal(fork.status, 507)
    assert.equal((await sandbox.getInfo()).state, 'running')
    assert.match((await sandbox.commands.run('pgrep -f "sleep 100003"')).stdout, /\d+/)
  } finally {
    execFileSync('umount', [snapshots])
    await sandbox.kill()
  }
})

// Last: it replaces the daemon.
test('a snapshot survives an isoboxd restart; sandboxes from it too', async () => {
  const original = await Sandbox.create({ timeoutMs: 600000 })
  await original.commands.run(COUNTER)
  await original.files.write('/home/user/kept.txt', 'in the snapshot')
  await until('the counter runs', async () => (await count(original)) > 3)
  const snapshot = await original.createSnapshot()
  assert.match(snapshot.snapshotId, /^[a-z0-9]{20}:default$/)
  assert.deepEqual(snapshot.names, [])
  const clone = await Sandbox.create(snapshot.snapshotId, { timeoutMs: 600000 })
  await original.kill()
  await daemon.stop({ keepDir: true })
  daemon = await startDaemon({ dir: daemon.dir, onExit: 'kill' })
  try {
    // The clone was re-adopted (reached through the new daemon's address); the snapshot
    // is listed and still makes sandboxes.
    const readopted = await Sandbox.connect(clone.sandboxId)
    assert.equal(await readopted.files.read('/home/user/kept.txt'), 'in the snapshot')
    const listed = await Sandbox.listSnapshots().nextItems()
    assert.deepEqual(listed.map((s) => s.snapshotId), [snapshot.snapshotId])
    const after = await Sandbox.create(snapshot.snapshotId, { timeoutMs: 120000 })
    assert.equal(await after.files.read('/home/user/kept.txt'), 'in the snapshot')
    const first = await count(after)
    await until('the restored counter counts on', async () => (await count(after)) > first)
    await after.kill()
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), true)
  } finally {
    await Sandbox.kill(clone.sandboxId).catch(() => {})
  }
})
