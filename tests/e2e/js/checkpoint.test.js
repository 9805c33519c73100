// Pause that frees memory (issue 21): the unmodified SDK's pause checkpoints the sandbox
// with CRIU (its processes end, their memory is released), connect restores it with every
// process where it was; Isobox-Pause-Mode: freeze keeps the fast freezer pause.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'
import { startDaemon, privateName } from './harness.js'

let daemon
before(async () => { daemon = await startDaemon() })
after(async () => { await daemon?.stop() })

// Bytes of memory the sandbox's processes hold now: anonymous memory and tmpfs/shared
// memory from its memory cgroup's stat (cgroup v1 here; v2 hosts: anon and shmem). The
// page cache of files it read is left out: it stays charged to the group after the
// processes end, is reclaimed under pressure, and depends on what the host had cached
// (a cold cache after a build made this flaky).
function memoryCharged(id) {
  const v1 = `/sys/fs/cgroup/memory/isobox/${privateName(id)}/memory.stat`
  const v2 = `/sys/fs/cgroup/isobox/${privateName(id)}/memory.stat`
  const stat = Object.fromEntries(readFileSync(existsSync(v1) ? v1 : v2, 'utf8').trim().split('\n')
    .map((line) => line.split(' ')).map(([key, value]) => [key, Number(value)]))
  return existsSync(v1) ? stat.total_rss + stat.total_shmem : stat.anon + stat.shmem
}

// The sandbox's memory (memoryCharged) once it is at most `bound`, or after 5 s: the
// kernel uncharges what ended processes held a moment later.
async function settledCharge(id, bound) {
  let charged = memoryCharged(id)
  const settle = Date.now() + 5000
  while (charged > bound && Date.now() < settle) {
    await new Promise((r) => setTimeout(r, 100))
    charged = memoryCharged(id)
  }
  return charged
}

function pause(id, headers = {}, body = undefined) {
  return fetch(`${daemon.url}/sandboxes/${id}/pause`, {
    method: 'POST',
    headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
}

test('pause checkpoints: memory is released, resume brings back processes, memory and files', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 600000 })
  try {
    await sandbox.files.write('/home/user/notes.txt', 'kept on disk')
    // A counter process whose state lives only in its memory, and 64 MiB held in a shell.
    await sandbox.commands.run(
      'nohup sh -c \'i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/counter; ' +
      'sleep 0.05; done\' ' +
      '>/dev/null 2>&1 &')
    await sandbox.commands.run(
      'nohup python3 -c "import os, time; b=bytearray(64<<20); b[::4096]=b\'x\'*(len(b)//4096); ' +
      'open(\'/tmp/held\',\'w\').write(str(os.getpid())); time.sleep(10**6)" >/dev/null 2>&1 &')
    await new Promise((r) => setTimeout(r, 1500))
    const before = (await sandbox.commands.run('cat /tmp/counter; cat /tmp/held')).stdout
    const [counterBefore, holderPid] = before.trim().split('\n').map(Number)
    assert.ok(counterBefore > 0 && holderPid > 0, before)
    const physPages = (await sandbox.commands.run(
      'python3 -c "import os; print(os.sysconf(\'SC_PHYS_PAGES\'))"')).stdout
    assert.ok(Number(physPages) > 0, physPages)
    const runningBytes = memoryCharged(sandbox.sandboxId)
    assert.ok(runningBytes > 64 << 20, `running: ${runningBytes}`)

    const raw = await pause(sandbox.sandboxId)
    assert.equal(raw.status, 204)
    assert.equal(raw.headers.get('isobox-pause-mode'), 'checkpoint; memory freed')
    assert.equal((await sandbox.getInfo()).state, 'paused')
    assert.equal(await sandbox.isRunning(), false)
    const pausedBytes = await settledCharge(sandbox.sandboxId, runningBytes * 0.05)
    assert.ok(pausedBytes <= runningBytes * 0.05, `paused ${pausedBytes} of ${runningBytes}`)
    // The checkpoint is on disk, only root's.
    const dir = join(daemon.stateDir, 'checkpoints', privateName(sandbox.sandboxId))
    assert.ok(readdirSync(dir).some((f) => f.startsWith('pages-')))
    assert.equal(await sandbox.pause(), false)  // already paused: 409

    const resumed = await Sandbox.connect(sandbox.sandboxId)
    assert.equal((await resumed.getInfo()).state, 'running')
    await new Promise((r) => setTimeout(r, 500))
    const holder = '$(cat /tmp/held)'
    const after = (await resumed.commands.run('cat /tmp/counter; cat /tmp/held; echo; ' +
      `python3 -c "print(sum(open('/proc/${holder}/status').read().count('VmRSS') for _ in [0]))"; ` +
      'cat /home/user/notes.txt; echo; cat /proc/self/cgroup | grep -c isobox || true')).stdout.trim().split('\n')
    // The same counter went on from where it was (not a new one from 0), the same pid
    // holds the same memory, the file is there, no host cgroup path is visible.
    assert.ok(Number(after[0]) > counterBefore, `counter ${after[0]} after ${counterBefore}`)
    assert.equal(Number(after[1]), holderPid)
    assert.equal(after[2], '1')  // the holder runs, with the pid it had
    assert.equal(after[3], 'kept on disk')
    assert.equal(after[4], '0')
    assert.equal(existsSync(dir), false)  // the checkpoint goes once restored
    // sysinfo(2) is answered again (glibc's physical pages come from it): the sandbox's
    // memory, as before the pause.
    const pages = 'python3 -c "import os; print(os.sysconf(\'SC_PHYS_PAGES\'))"'
    assert.equal((await resumed.commands.run(pages)).stdout, physPages)
    // Commands, files and a second pause + resume work as before.
    assert.equal((await resumed.commands.run('echo again')).stdout, 'again\n')
    assert.equal((await pause(sandbox.sandboxId)).status, 204)
    const twice = await Sandbox.connect(sandbox.sandboxId)
    assert.equal((await twice.commands.run(`kill -0 ${holderPid} && echo alive`)).stdout, 'alive\n')
  } finally {
    await sandbox.kill()
  }
})

test('Isobox-Pause-Mode: freeze keeps memory; bad pause options are refused', async () => {
  const sandbox = await Sandbox.create()
  try {
    const frozen = await pause(sandbox.sandboxId, { 'Isobox-Pause-Mode': 'freeze' })
    assert.equal(frozen.status, 204)
    assert.equal(frozen.headers.get('isobox-pause-mode'), 'freezer; memory kept')
    await Sandbox.connect(sandbox.sandboxId)

    const badMode = await pause(sandbox.sandboxId, { 'Isobox-Pause-Mode': 'sleep' })
    assert.equal(badMode.status, 400)
    assert.match((await badMode.json()).message, /Isobox-Pause-Mode/)
    const notBool = await pause(sandbox.sandboxId, {}, { memory: 'no' })
    assert.equal(notBool.status, 400)
    assert.match((await notBool.json()).message, /'memory' must be a boolean/)
    const unknown = await pause(sandbox.sandboxId, {}, { memroy: true })
    assert.equal(unknown.status, 400)
    assert.equal((await sandbox.getInfo()).state, 'running')  // none of them paused it
    assert.equal((await pause('doesnotexist00000000')).status, 404)
  } finally {
    await sandbox.kill()
  }
})

test('a sandbox killed while paused leaves no checkpoint behind', async () => {
  const sandbox = await Sandbox.create()
  const dir = join(daemon.stateDir, 'checkpoints', privateName(sandbox.sandboxId))
  assert.equal((await pause(sandbox.sandboxId)).status, 204)
  assert.equal(existsSync(dir), true)
  await Sandbox.kill(sandbox.sandboxId)
  assert.equal(existsSync(dir), false)
})

test('a code interpreter sandbox pauses with its kernels: variables, DataFrames and contexts come back', async () => {
  const sandbox = await CodeSandbox.create({ timeoutMs: 600000 })
  try {
    await sandbox.runCode('import pandas as pd\ndf = pd.DataFrame({"a": [1, 2, 3]})\nx = 41')
    assert.equal((await sandbox.runCode('let k = 7; k', { language: 'js' })).text, '7')
    const context = await sandbox.createCodeContext({ language: 'python' })
    await sandbox.runCode('y = "own context"', { context })
    const charged = memoryCharged(sandbox.sandboxId)

    const raw = await pause(sandbox.sandboxId)
    assert.equal(raw.status, 204, await raw.text())
    assert.equal(raw.headers.get('isobox-pause-mode'), 'checkpoint; memory freed')
    // The kernels' memory is released with every other process's.
    const paused = await settledCharge(sandbox.sandboxId, charged * 0.05)
    assert.ok(paused <= charged * 0.05, `paused ${paused} of ${charged}`)

    const resumed = await CodeSandbox.connect(sandbox.sandboxId)
    const python = await resumed.runCode('x += 1\nprint(df.a.sum())\nx')
    assert.equal(python.error, undefined)
    assert.equal(python.text, '42')
    assert.deepEqual(python.logs.stdout, ['6\n'])
    assert.equal((await resumed.runCode('k + 1', { language: 'js' })).text, '8')
    assert.equal((await resumed.runCode('y', { context })).text, 'own context')
    assert.ok((await resumed.listCodeContexts()).some((c) => c.id === context.id))
    // A new context starts a kernel in the restored interpreter.
    const fresh = await resumed.createCodeContext({ language: 'python' })
    assert.equal((await resumed.runCode('1 + 1', { context: fresh })).text, '2')

    // Files only: the kernels start again, empty; the files are there.
    await resumed.files.write('/home/user/kept.py', 'VALUE = 7\n')
    assert.equal(await resumed.pause({ keepMemory: false }), true)
    const respawned = await CodeSandbox.connect(sandbox.sandboxId)
    assert.equal((await respawned.runCode('x')).error?.name, 'NameError')
    assert.equal((await respawned.runCode('import sys; sys.path.insert(0, "/home/user"); import kept; kept.VALUE')).text, '7')
  } finally {
    await sandbox.kill()
  }
})
