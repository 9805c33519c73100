// Where a loop's cost lands, read from /proc: the whole machine's busy CPU, one process's
// CPU with the children it reaped, and what reached the host's disks.
import { readFileSync, readdirSync } from 'node:fs'

const TICK_MS = 10  // USER_HZ = 100

// Busy CPU time of the whole machine (all cores, every process and the kernel), in ms.
export function busyCpuMs() {
  // user nice system idle iowait irq softirq steal (guest time is in user already)
  const ticks = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1, 9).map(Number)
  const idle = ticks[3] + ticks[4]  // idle + iowait
  return (ticks.reduce((a, b) => a + b, 0) - idle) * TICK_MS
}

// CPU of process `pid` in ms: its own (user + system) and that of the children it has
// reaped (for isoboxd: its zygotes and the sandboxes' inits and agents, once they end).
export function processCpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces): state is field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
  const [utime, stime, cutime, cstime] = fields.slice(11, 15)
  return { self: (utime + stime) * TICK_MS, children: (cutime + cstime) * TICK_MS }
}

// This node process's own CPU in ms (the benchmark's client).
export function clientCpuMs() {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

// Bytes written to the host's disks: whole block devices that are not loop, RAM or
// compressed-RAM devices (a sandbox disk's writes reach the host only through them).
export function hostDiskWrittenBytes() {
  const disks = new Set(readdirSync('/sys/block').filter((name) => !/^(loop|ram|zram)/.test(name)))
  let sectors = 0
  for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (disks.has(fields[2])) sectors += Number(fields[9])
  }
  return sectors * 512
}

// A snapshot of all of the above for `pid`; `costPer(before, after, n)` divides the
// difference by n (CPU in ms, writes in KiB).
export function costSnapshot(pid) {
  return { busy: busyCpuMs(), daemon: processCpuMs(pid), client: clientCpuMs(),
    written: hostDiskWrittenBytes() }
}

export function costPer(before, after, n) {
  const per = (value) => +(value / Math.max(n, 1)).toFixed(2)
  return {
    busyMs: per(after.busy - before.busy),
    daemonMs: per(after.daemon.self - before.daemon.self),
    daemonChildrenMs: per(after.daemon.children - before.daemon.children),
    clientMs: per(after.client - before.client),
    hostWritesKiB: per((after.written - before.written) / 1024),
  }
}
