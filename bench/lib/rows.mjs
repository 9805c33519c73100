// Every row bench/run reports, in table order. A row is measured, or skipped with a reason
// (a peer that is not installed); bench_quick_smoke checks that the JSON has each of them.
import { DOWNLOAD_ROWS } from './net.mjs'
import { TEMPLATE_ROWS } from './templates.mjs'
import { PAUSE_ROWS } from './pause.mjs'

export const CONCURRENCY = [1, 10, 50]

export const CREATE_PEERS = [
  { key: 'true', what: '/bin/true (fork/exec)' },
  { key: 'unshare', what: 'unshare (user/pid/mount/net/uts/ipc) true' },
  { key: 'bwrap', what: 'bwrap --unshare-all ... /bin/true' },
  { key: 'crun', what: 'crun run (bundle, /bin/true)' },
  { key: 'runc', what: 'runc run (bundle, /bin/true)' },
  { key: 'runsc', what: 'runsc --platform=ptrace --network=none do true (gVisor, as root, cgroup v1)' },
]

export function rowIds() {
  const ids = []
  for (const pool of ['nopool', 'pool']) {
    for (const c of CONCURRENCY) ids.push(`create.c${c}.${pool}`)
    if (pool === 'nopool') ids.push('create.c1.nopool.nonet')
  }
  for (const peer of CREATE_PEERS) {
    for (const c of CONCURRENCY) ids.push(`peer.${peer.key}.c${c}`)
  }
  ids.push('sdk.first_command.nopool', 'sdk.first_command.pool',
    'sdk.first_runcode.nopool', 'sdk.first_runcode.pool', 'peer.jupyter_cold')
  ids.push('sustained.isobox', 'sustained.bwrap')
  for (const kind of ['base', 'ci']) {
    ids.push(`density.${kind}.count`, `density.${kind}.cgroup_mib`, `density.${kind}.pss_mib`,
      `density.${kind}.host_mib`)
  }
  ids.push('roundtrip.runcode.sdk', 'roundtrip.runcode.jupyter_client',
    'roundtrip.command.sdk', 'roundtrip.command.forkexec')
  ids.push(...DOWNLOAD_ROWS)
  ids.push(...TEMPLATE_ROWS)
  ids.push(...PAUSE_ROWS)
  ids.push('files')
  return ids
}
