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
