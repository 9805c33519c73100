// Ctrl-C in the terminal that started isoboxd (issue 17): the terminal sends SIGINT to
// its whole foreground process group, not to isoboxd alone. isoboxd must end as SIGINT
// tells it (a graceful shutdown that applies --on-exit), and nothing else may die of that
// SIGINT: not its helpers (the zygote server and zygotes), not the sandboxes' processes.
// isoboxd runs here as the foreground job of a real pseudo-terminal (helpers/
// foreground_job.py), and the test presses Ctrl-C by writing ^C to the terminal.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Sandbox } from 'e2b'
import { agentPids, startDaemon, until } from './harness.js'

const HELPER = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'foreground_job.py')
const API_KEY = 'e2b_' + '0123456789abcdef'.repeat(2) + '01234567'  // harness.js's

// /proc/<pid>/stat: [state, process group, session] (a zombie is not alive).
function stat(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
    return { state: fields[0], pgrp: Number(fields[2]), session: Number(fields[3]) }
  } catch {
    return { state: 'gone' }
  }
}

// The processes of process group `pgrp` but `leader`, as "pid name".
function othersInGroup(pgrp, leader) {
  const found = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === leader) continue
    if (stat(entry).pgrp !== pgrp) continue
    let name = '?'
    try { name = readFileSync(`/proc/${entry}/comm`, 'utf8').trim() } catch {}
    found.push(`${entry} ${name}`)
  }
  return found
}

function alive(pid) {
  const { state } = stat(pid)
  return state !== 'gone' && state !== 'Z' && state !== 'X'
}

// isoboxd as the foreground job of a new terminal, with the layout of harness.js's
// startDaemon in `dir` (so that startDaemon({ dir }) restarts it on the same state).
async function startInTerminal(dir, onExit) {
  const portFile = join(dir, 'port')
  const job = spawn('python3', [HELPER, process.env.ISOBOXD,
    '--state-dir', join(dir, 'state'), '--port', '0', '--port-file', portFile,
    '--api-key', API_KEY, '--log-level', 'info', '--on-exit', onExit,
    '--pool', 'base=0', '--pool', 'code-interpreter-v1=0'],
  { stdio: ['pipe', 'pipe', 'pipe'] })
  const terminal = { job, output: '', reports: [] }
  job.stdout.setEncoding('utf8')
  job.stderr.setEncoding('utf8')
  job.stdout.on('data', (text) => terminal.reports.push(...text.trim().split('\n')))
  job.stderr.on('data', (text) => { terminal.output += text })
  terminal.ended = new Promise((resolve) => job.once('exit', resolve))
  try {
    await until('isoboxd to listen in the terminal', () =>
      existsSync(portFile) && readFileSync(portFile, 'utf8').trim() !== '', 30000)
  } catch (error) {
    // isoboxd did not start (or exited): close the terminal, or the helper and this
    // file's process would wait for each other forever.
    job.stdin.end()
    job.kill('SIGKILL')
    await terminal.ended
    throw new Error(`${error.message}; isoboxd said: ${terminal.output.slice(-2000)}`)
  }
  const url = `http://127.0.0.1:${readFileSync(portFile, 'utf8').trim()}`
  process.env.E2B_API_URL = url
  process.env.E2B_SANDBOX_URL = url
  process.env.E2B_API_KEY = API_KEY
  return terminal
}

// Presses Ctrl-C and returns how isoboxd ended ("exit N" or "signal N").
async function pressCtrlC(terminal) {
  terminal.job.stdin.write('intr\n')
  return until('isoboxd to end', () =>
    terminal.reports.find((line) => /^(exit|signal) /.test(line)), 30000)
}

// Ends isoboxd with Ctrl-C if it still runs (closing the terminal would hang it up:
// SIGHUP, no clean-up), then closes the terminal.
async function closeTerminal(terminal) {
  if (!terminal.reports.some((line) => /^(exit|signal) /.test(line))) {
    await pressCtrlC(terminal).catch(() => {})
  }
  terminal.job.stdin.end()
  await terminal.ended
}

test('Ctrl-C ends isoboxd as SIGINT does: a graceful shutdown that applies --on-exit kill',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'isobox-ctrlc-'))
    const terminal = await startInTerminal(dir, 'kill')
    try {
      const sandbox = await Sandbox.create({ timeoutMs: 120000 })
      const agents = agentPids(sandbox.sandboxId)
      assert.ok(agents.length > 0, 'the sandbox\'s agent is found')
      assert.equal(await pressCtrlC(terminal), 'exit 0')
      assert.match(terminal.output, /signal 2: shutting down/)
      // --on-exit kill: the daemon killed its sandboxes on the way out, itself.
      await until('the sandbox to be gone', () => agents.every((pid) => !alive(pid)))
    } finally {
      await closeTerminal(terminal)
      rmSync(dir, { recursive: true, force: true })
    }
  })

test('Ctrl-C with --on-exit keep: every sandbox keeps running and a new isoboxd adopts it',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'isobox-ctrlc-'))
    const terminal = await startInTerminal(dir, 'keep')
    let daemon
    try {
      // More at once than the spares kept ready (4 per template), so that on cgroup v1 both
      // ways of starting a sandbox are (most likely) covered: cloned by a spare's zygote,
      // in the zygote server's session, and cloned by isoboxd itself, in its process group
      // until the init's own setsid. On cgroup v2 isoboxd clones every one.
      const sandboxes = await Promise.all(
        Array.from({ length: 10 }, () => Sandbox.create({ timeoutMs: 120000 })))
      const sleepers = []
      const seen = []
      for (const sandbox of sandboxes) {
        await sandbox.files.write('/home/user/note', sandbox.sandboxId)
        sleepers.push(await sandbox.commands.run('sleep 600', { background: true }))
        const pids = agentPids(sandbox.sandboxId)
        assert.ok(pids.length > 0, 'the sandbox\'s agent is found')
        seen.push(...pids.map((pid) => ({ pid, ...stat(pid) })))
      }
      // isoboxd is alone in the terminal's foreground process group: its helpers (the
      // zygote server, its zygotes) and every sandbox run in sessions of their own.
      const job = Number(terminal.reports.find((line) => line.startsWith('pid ')).slice(4))
      assert.deepEqual(othersInGroup(job, job), [], 'in isoboxd\'s foreground process group')
      assert.equal(await pressCtrlC(terminal), 'exit 0')
      assert.match(terminal.output, /signal 2: shutting down/)
      // Every sandbox's agent survived the terminal's SIGINT (and its own SIGINT handler
      // never ran: it stopped nothing). The terminal stays open meanwhile.
      daemon = await startDaemon({ dir })
      const dead = seen.filter(({ pid }) => !alive(pid))
      assert.deepEqual(dead, [], `agents that died of Ctrl-C (isoboxd's process group: ${job})`)

      for (const [i, sandbox] of sandboxes.entries()) {
        const again = await Sandbox.connect(sandbox.sandboxId)
        assert.equal(await again.files.read('/home/user/note'), sandbox.sandboxId)
        const listed = await again.commands.list()
        assert.ok(listed.some((p) => p.pid === sleepers[i].pid), 'the background command runs on')
        assert.equal((await again.commands.run('echo adopted')).stdout, 'adopted\n')
        assert.equal(await again.kill(), true)
      }
    } finally {
      await closeTerminal(terminal)
      // A daemon with --on-exit kill takes whatever is left with it, and the directory.
      daemon ??= await startDaemon({ dir })
      await daemon.stop()
    }
  })
