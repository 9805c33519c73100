// bench/run's pause rows (issue 21), through the unmodified `e2b` SDK on one daemon:
//   - pause (a CRIU checkpoint) and resume (Sandbox.connect, a restore) of an idle `base`
//     sandbox, beside Isobox's freezer pause and its thaw and E2B's files-only pause
//     (keepMemory: false) and its resume (envd started again on the kept disk), interleaved;
//   - the memory a checkpointed sandbox still holds, in % of what it held running (its
//     memory cgroup's anonymous and shared memory, page cache left out, with a process
//     holding 64 MiB);
//   - a snapshot of a running base sandbox: how long it stops (the daemon's pausedMs) and
//     the whole call; a fork of 10 (one checkpoint, ten restores), whole call to answer;
//   - pause (checkpoint) and resume of an idle `code-interpreter-v1` sandbox with pandas
//     loaded in its Python kernel (and its JavaScript kernel running), checked after each
//     resume.
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

export const PAUSE_ROWS = ['pause.base.checkpoint', 'pause.base.restore', 'pause.base.freeze',
  'pause.base.thaw', 'pause.base.files', 'pause.base.respawn', 'pause.base.paused_memory_pct', 'pause.ci.checkpoint', 'pause.ci.restore',
  'pause.snapshot', 'pause.fork10']
export const PAUSE_NA_ROWS = []

const now = () => Number(process.hrtime.bigint()) / 1e6

// Memory the sandbox's processes hold: anonymous and tmpfs/shared memory from its memory
// cgroup's stat (v1: total_rss + total_shmem; v2: anon + shmem). The page cache of files
// it read stays charged to the group after the processes end, is reclaimable, and depends
// on what the host had cached: left out.
function charged(privateName, id) {
  const v1 = `/sys/fs/cgroup/memory/isobox/${privateName(id)}/memory.stat`
  const v2 = `/sys/fs/cgroup/isobox/${privateName(id)}/memory.stat`
  const stat = Object.fromEntries(readFileSync(existsSync(v1) ? v1 : v2, 'utf8').trim().split('\n')
    .map((line) => line.split(' ')).map(([key, value]) => [key, Number(value)]))
  return existsSync(v1) ? stat.total_rss + stat.total_shmem : stat.anon + stat.shmem
}

// ctx: { repo, quick, daemonArgs, record, summary }.
export async function pauseRows(ctx) {
  const rounds = ctx.quick ? 3 : 20
  const e2eDir = join(ctx.repo, 'tests/e2e/js')
  const { startDaemon, privateName } = await import(pathToFileURL(join(e2eDir, 'harness.js')).href)
  const { Sandbox } = createRequire(join(e2eDir, 'package.json'))('e2b')
  const CodeSandbox = createRequire(join(e2eDir, 'package.json'))('@e2b/code-interpreter').Sandbox
  const daemon = await startDaemon({ pools: ['base=0', 'code-interpreter-v1=0'],
    args: ctx.daemonArgs })
  const pause = (id, mode) => fetch(`${daemon.url}/sandboxes/${id}/pause`, {
    method: 'POST',
    headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json',
      ...(mode && mode !== 'files' ? { 'Isobox-Pause-Mode': mode } : {}) },
    body: mode === 'files' ? JSON.stringify({ memory: false }) : undefined,
  })
  const resumedBy = { checkpoint: 'restore', freeze: 'thaw', files: 'respawn' }
  try {
    console.error(`pause: ${rounds} checkpoints, freezes and files-only pauses of an idle base sandbox`)
    const sandbox = await Sandbox.create({ timeoutMs: 3600000 })
    await sandbox.commands.run('true')
    const samples = { checkpoint: [], restore: [], freeze: [], thaw: [], files: [], respawn: [] }
    for (let i = 0; i < rounds; i++) {
      for (const mode of ['checkpoint', 'freeze', 'files']) {
        let t = now()
        const paused = await pause(sandbox.sandboxId, mode)
        if (paused.status !== 204) throw new Error(`pause (${mode}): ${paused.status}`)
        samples[mode].push(now() - t)
        t = now()
        await Sandbox.connect(sandbox.sandboxId)
        samples[resumedBy[mode]].push(now() - t)
      }
    }
    const rows = {
      checkpoint: 'pause of an idle base sandbox: CRIU checkpoint, memory freed (E2B: ~1 s)',
      restore: 'resume (Sandbox.connect) of a checkpointed base sandbox (target <= 150 ms)',
      freeze: 'pause with Isobox-Pause-Mode: freeze (cgroup freezer, memory kept)',
      thaw: 'resume (Sandbox.connect) of a frozen base sandbox',
      files: 'pause with keepMemory: false (processes end, disk kept)',
      respawn: 'resume of it (envd started again on its disk)',
    }
    for (const [key, what] of Object.entries(rows)) {
      ctx.record(`pause.base.${key}`, { what, unit: 'ms', ...ctx.summary(samples[key]) })
    }
    // Memory: a process holding 64 MiB, running then checkpointed.
    await sandbox.commands.run('nohup python3 -c "import time; b=bytearray(64<<20); ' +
      'b[::4096]=b\'x\'*(len(b)//4096); time.sleep(10**6)" >/dev/null 2>&1 & sleep 1')
    const running = charged(privateName, sandbox.sandboxId)
    await pause(sandbox.sandboxId)
    const paused = charged(privateName, sandbox.sandboxId)
    ctx.record('pause.base.paused_memory_pct', {
      what: `memory a checkpointed sandbox holds, % of running (${(running / 2 ** 20).toFixed(1)}` +
        ' MiB running; target <= 5 %)',
      unit: '%', value: +(100 * paused / running).toFixed(2) })
    await Sandbox.connect(sandbox.sandboxId)
    // Snapshots of an idle base sandbox again (the 64 MiB holder ends); it runs a loop
    // meanwhile (a process that is stopped, dumped
    // and let go on).
    await sandbox.commands.run("pkill -x python3; nohup sh -c 'while true; do sleep 0.05; done' >/dev/null 2>&1 &")
    const snapshotSamples = { stopped: [], call: [] }
    for (let i = 0; i < rounds; i++) {
      const t = now()
      const res = await fetch(`${daemon.url}/sandboxes/${sandbox.sandboxId}/snapshots`, {
        method: 'POST', headers: { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' },
        body: '{}' })
      if (res.status !== 201) throw new Error(`snapshot: ${res.status} ${await res.text()}`)
      snapshotSamples.call.push(now() - t)
      const body = await res.json()
      snapshotSamples.stopped.push(body.pausedMs)
      await Sandbox.deleteSnapshot(body.snapshotID)
    }
    const call = ctx.summary(snapshotSamples.call)
    ctx.record('pause.snapshot', {
      what: `snapshot of a running base sandbox: how long it stops (target <= 300 ms; whole ` +
        `call p50 ${call.p50.toFixed(1)} ms)`, unit: 'ms', ...ctx.summary(snapshotSamples.stopped) })
    const forkRounds = ctx.quick ? 1 : 5
    console.error(`pause: ${forkRounds} forks of 10`)
    const forkSamples = []
    for (let i = 0; i < forkRounds; i++) {
      const t = now()
      const forks = await Sandbox.fork(sandbox.sandboxId, { count: 10, timeoutMs: 600000 })
      forkSamples.push(now() - t)
      const failed = forks.filter((f) => f instanceof Error)
      if (failed.length) throw new Error(`fork: ${failed[0]}`)
      for (const fork of forks) await Sandbox.kill(fork.sandboxId)
    }
    ctx.record('pause.fork10', { what: 'fork of 10: one checkpoint, ten sandboxes answering (target <= 2 s)',
      unit: 'ms', ...ctx.summary(forkSamples) })
    await Sandbox.kill(sandbox.sandboxId)

    console.error(`pause: ${rounds} checkpoints of a code-interpreter-v1 sandbox with pandas loaded`)
    const notebook = await CodeSandbox.create({ timeoutMs: 3600000 })
    const loaded = await notebook.runCode('import pandas as pd\ndf = pd.DataFrame({"a": range(1000)})\nint(df.a.sum())')
    if (loaded.text !== '499500') throw new Error(`pandas: ${loaded.error?.value ?? loaded.text}`)
    const ciSamples = { checkpoint: [], restore: [] }
    for (let i = 0; i < rounds; i++) {
      let t = now()
      const paused = await pause(notebook.sandboxId, 'checkpoint')
      if (paused.status !== 204) throw new Error(`pause (code interpreter): ${paused.status} ${await paused.text()}`)
      ciSamples.checkpoint.push(now() - t)
      t = now()
      const resumed = await CodeSandbox.connect(notebook.sandboxId)
      ciSamples.restore.push(now() - t)
      const kept = await resumed.runCode('int(df.a.sum())')
      if (kept.text !== '499500') throw new Error(`after a resume: ${kept.error?.value ?? kept.text}`)
    }
    ctx.record('pause.ci.checkpoint', { what: 'pause of a code-interpreter-v1 sandbox with pandas loaded',
      unit: 'ms', ...ctx.summary(ciSamples.checkpoint) })
    ctx.record('pause.ci.restore', { what: 'resume of it (target <= 300 ms)', unit: 'ms',
      ...ctx.summary(ciSamples.restore) })
    await notebook.kill()
  } finally {
    await daemon.stop()
  }
}
