// sysinfo(2) shows the sandbox, not the host (issue 18, point 5): isoboxd answers it with
// the sandbox's memory limit and usage (src/runtime/sysinfo.h), so glibc's
// sysconf(_SC_PHYS_PAGES), Python's os.sysconf and the JVM's default heap size (a quarter
// of "physical" memory) size themselves by the sandbox, for `user` and for `root`. A
// restarted isoboxd (--on-exit keep, or after kill -9) takes the listener back from the
// sandbox's init: calls made while no daemon ran waited, and were answered by the next.
// Through the unmodified `e2b` SDK against a real isoboxd.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'
import { startDaemon, until } from './harness.js'

const PHYS = "python3 -c \"import os; print(os.sysconf('SC_PHYS_PAGES')*os.sysconf('SC_PAGE_SIZE'))\""
const AVPHYS = "python3 -c \"import os; print(os.sysconf('SC_AVPHYS_PAGES')*os.sysconf('SC_PAGE_SIZE'))\""
const HEAP = 'java -XX:+PrintFlagsFinal -version 2>/dev/null | awk \'$2 == "MaxHeapSize" {print $4}\''

async function ok(sandbox, cmd, opts = {}) {
  const result = await sandbox.commands.run(cmd, opts).catch((error) => {
    if (error.exitCode === undefined) throw error
    return error
  })
  assert.equal(result.exitCode, 0, `${cmd}: ${result.stderr}`)
  return result.stdout.trim()
}

async function limitOf(sandbox) {
  return (await sandbox.getInfo()).memoryMB * 1024 * 1024
}

test('sysinfo: the sandbox\'s memory for os.sysconf and the JVM, as user and as root', async () => {
  const daemon = await startDaemon()
  try {
    const sandbox = await Sandbox.create()
    const limit = await limitOf(sandbox)
    for (const user of ['user', 'root']) {
      assert.equal(Number(await ok(sandbox, PHYS, { user })), limit, `${user}: SC_PHYS_PAGES`)
      const available = Number(await ok(sandbox, AVPHYS, { user }))
      assert.ok(available > 0 && available < limit, `${user}: SC_AVPHYS_PAGES ${available}`)
      // The JVM's default: MaxRAMPercentage (25) of physical memory, 256 MiB for 1 GiB.
      assert.equal(Number(await ok(sandbox, HEAP, { user })), limit / 4, `${user}: MaxHeapSize`)
    }
    // The same figure as /proc/meminfo's MemTotal (limits view).
    const memTotal = Number(await ok(sandbox, "awk '/^MemTotal/ {print $2}' /proc/meminfo"))
    assert.equal(memTotal * 1024, limit)
    // Usage moves freeram: 200 MiB held by a process lowers what the next one sees.
    const holder = await sandbox.commands.run(
      "python3 -c \"import time; b = bytearray(200 << 20); time.sleep(600)\"", { background: true })
    await until('200 MiB to be held', async () =>
      Number(await ok(sandbox, AVPHYS)) < limit - (200 << 20))
    await sandbox.commands.kill(holder.pid)
    await sandbox.kill()
  } finally {
    await daemon.stop()
  }
})

// A python loop that calls sysinfo(2) every 20 ms and appends totalram * mem_unit, or
// "error <errno>", to `file`. Through libc with a zeroed buffer each time: glibc's
// sysconf ignores a failed sysinfo, and would hand back what the stack held.
function askingLoop(file) {
  return `python3 -c "
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
info = ctypes.create_string_buffer(128)
with open('${file}', 'a') as out:
    for _ in range(3000):
        ctypes.memset(info, 0, 128)
        if libc.sysinfo(info) != 0:
            out.write('error %d\\n' % ctypes.get_errno())
        else:
            raw = info.raw
            total = int.from_bytes(raw[32:40], 'little') * int.from_bytes(raw[104:108], 'little')
            out.write('%d\\n' % total)
        out.flush()
        time.sleep(0.02)
"`
}

// The answers so far (none while the loop has not made the file yet).
async function lines(sandbox, file) {
  if (!(await sandbox.files.exists(file))) return []
  const text = await sandbox.files.read(file)
  return text.split('\n').filter((line) => line !== '')
}

for (const how of ['--on-exit keep', 'kill -9']) {
  test(`sysinfo after an isoboxd restart (${how}): the next isoboxd answers`, async () => {
    let daemon = await startDaemon({ onExit: how === 'kill -9' ? 'kill' : 'keep' })
    try {
      const sandbox = await Sandbox.create({ timeoutMs: 120000 })
      const limit = await limitOf(sandbox)
      const file = '/tmp/phys.log'
      const loop = await sandbox.commands.run(askingLoop(file), { background: true })
      await until('the loop to answer', async () => (await lines(sandbox, file)).length >= 3)
      if (how === 'kill -9') await daemon.crash()
      else await daemon.stop({ keepDir: true })
      daemon = await startDaemon({ dir: daemon.dir })
      const again = await Sandbox.connect(sandbox.sandboxId)
      const atRestart = (await lines(again, file)).length
      await until('the loop to go on', async () =>
        (await lines(again, file)).length >= atRestart + 10)
      await again.commands.kill(loop.pid)
      // Every answer, before, across and after the restart, is the sandbox's limit: none
      // failed (ENOSYS: no listener left) and none was the host's.
      for (const line of await lines(again, file)) assert.equal(line, String(limit))
      assert.equal(Number(await ok(again, PHYS, { user: 'root' })), limit)
      assert.equal(Number(await ok(again, HEAP)), limit / 4)
      await again.kill()
    } finally {
      await daemon.stop()
    }
  })
}
