import { until } from '../harness.js'

// What the network tests share: the fake internet's two web hosts (helpers/fakenet.js) and
// running commands in a sandbox whose failures are answers, not exceptions.
export const WEB = '198.51.100.10'
export const OTHER = '203.0.113.10'

// The command's result, also when it exits non-zero (the error carries exitCode, stdout
// and stderr); other errors (the sandbox is gone) are thrown.
export async function run(sandbox, cmd, opts = {}) {
  return sandbox.commands.run(cmd, opts).catch((error) => {
    if (error.exitCode === undefined) throw error
    return error
  })
}

// What the echo server at `url` saw, fetched from inside the sandbox with curl (its default
// trust store; `extra` adds options); if the fetch failed (no connection, or an HTTP error
// such as the egress proxy's 403), curl's exit code in `.failed` and its stderr.
export async function fetchEcho(sandbox, url, extra = '') {
  const result = await run(sandbox, `curl -sSf -m 5 ${extra} ${url}`)
  if (result.exitCode !== 0) return { failed: result.exitCode, stderr: result.stderr }
  return JSON.parse(result.stdout)
}

// A TCP connection from the sandbox to address:port (the fake internet's echo on 7) kept
// busy, a byte every 50 ms: the background command's handle, once the connection is open.
// Its output holds 'open' while it lasts; it ends when the connection is cut.
export async function holdConnection(sandbox, address, port) {
  const held = await sandbox.commands.run(
    `python3 -c "
import socket, sys, time
s = socket.create_connection(('${address}', ${port}), timeout=30)
print('open', flush=True)
while True:
    s.sendall(b'x')
    if not s.recv(1):
        print('closed', flush=True); sys.exit(0)
    time.sleep(0.05)
" 2>&1`, { background: true })
  await until('the connection is open', () => held.stdout.includes('open'))
  return held
}
