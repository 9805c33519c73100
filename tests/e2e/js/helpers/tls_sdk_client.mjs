// Run by tls.test.js in its own node process, so that NODE_EXTRA_CA_CERTS (read once at
// start-up) makes the SDK trust the test CA. Drives the SDK over https only: the control
// plane and envd through E2B_API_URL / E2B_SANDBOX_URL, then starts a server on port 8000.
// Prints one JSON line: {sandboxId, host, stdout, file}.
import { Sandbox } from 'e2b'

const sandbox = await Sandbox.create({ domain: 'isobox.test' })
const run = await sandbox.commands.run('echo over tls')
await sandbox.files.write('site/hello.txt', 'hello over https')
const file = await sandbox.files.read('site/hello.txt')
// No lifetime limit: the server must outlive this process (the test reaches it after).
await sandbox.commands.run('cd site && python3 -m http.server 8000',
  { background: true, timeoutMs: 0 })
console.log(JSON.stringify({
  sandboxId: sandbox.sandboxId,
  host: sandbox.getHost(8000),
  stdout: run.stdout,
  file,
}))
// The background command's stream would keep the process alive.
process.exit(0)
