// Secrets added at the edge and egressProxy (issue 19 points 5 and 6), through the
// unmodified `e2b` SDK against a real isoboxd, offline: the fake internet
// (helpers/fakenet.js) echoes what it received (headers, SNI, the client's address) and
// holds a SOCKS5 proxy; isoboxd trusts its TLS servers through --upstream-ca.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { Sandbox, Secret } from 'e2b'
import { startDaemon } from './harness.js'
import { FakeNet } from './helpers/fakenet.js'
import { OTHER, WEB, fetchEcho, holdConnection, run } from './helpers/sandbox_net.js'

const SECRET_VALUE = 'sk-live-0a1b2c3d4e5f'

let fake
let daemon
before(async () => {
  fake = await FakeNet.start()
  fake.setDns({ 'api.example.test': WEB, 'other.example.test': OTHER, 'proxy.example.test': fake.socks.address })
  daemon = await startDaemon({
    logLevel: process.env.NET_LOG ?? 'warn',
    args: ['--dns-server', fake.dnsServer, '--upstream-ca', fake.caPath],
  })
})
after(async () => {
  await daemon?.stop()
  await fake?.stop()
})



const RULES = {
  'api.example.test': [
    { transform: { headers: { 'X-Api-Key': SECRET_VALUE } } },
    { transform: { headers: { Authorization: `Bearer ${Secret.fill('edge-token')}` } } },
  ],
}

test('rule headers reach the upstream over HTTP and HTTPS, and never the sandbox', async () => {
  await Secret.create('edge-token', 'token-one')
  const sandbox = await Sandbox.create({ network: { rules: RULES } })
  try {
    const plain = await fetchEcho(sandbox, 'http://api.example.test/plain', '-H "X-Api-Key: mine"')
    assert.equal(plain.headers['x-api-key'], SECRET_VALUE, JSON.stringify(plain))
    assert.equal(plain.headers.authorization, 'Bearer token-one')
    // Intercepted: the sandbox trusts isoboxd's CA (its store and SSL_CERT_FILE); the
    // proxy verified the upstream against --upstream-ca.
    const secure = await fetchEcho(sandbox, 'https://api.example.test/secure')
    assert.equal(secure.headers['x-api-key'], SECRET_VALUE, JSON.stringify(secure))
    assert.equal(secure.sni, 'api.example.test')
    assert.equal(secure.alpn, 'http/1.1')
    const py = await run(sandbox, `python3 -c "import urllib.request,json; print(json.load(urllib.request.urlopen('https://api.example.test/py'))['headers']['authorization'])"`)
    assert.equal(py.stdout.trim(), 'Bearer token-one', py.stderr)
    const node = await run(sandbox, `node -e "fetch('https://api.example.test/node').then(r=>r.json()).then(j=>console.log(j.headers['x-api-key']))"`)
    assert.equal(node.stdout.trim(), SECRET_VALUE, node.stderr)
    // Hosts without rules are not intercepted: the upstream's own certificate (the fake
    // CA, which the sandbox does not trust), and no header.
    const other = await fetchEcho(sandbox, 'https://other.example.test/')
    assert.ok(other.failed, 'not intercepted: the fake CA is not trusted in the sandbox')
    const otherPlain = await fetchEcho(sandbox, 'http://other.example.test/')
    assert.equal(otherPlain.headers['x-api-key'], undefined)

    // A new value applies to the next connection.
    await Secret.update('edge-token', 'token-two')
    assert.equal((await fetchEcho(sandbox, 'http://api.example.test/')).headers.authorization,
      'Bearer token-two')

    // Nowhere inside: environment, files, process arguments; getInfo shows names only.
    // The patterns are pieced together in a file outside the searched places, so that no
    // process's arguments hold them.
    const [a, b] = [SECRET_VALUE.slice(0, 8), SECRET_VALUE.slice(8)]
    const search = await run(sandbox,
      `A='${a}'; B='${b}'; T='token'; printf '%s%s\\n%s-two\\n' "$A" "$B" "$T" > /run/patterns; ` +
      '(env; cat /proc/*/cmdline; grep -rs -f /run/patterns /etc /home /tmp /root) 2>/dev/null | grep -c -f /run/patterns; ' +
      '(echo "$A$B") | grep -c -f /run/patterns',
      { user: 'root' })
    // The second count is the search's own control: it finds what is there.
    assert.equal(search.stdout.trim(), '0\n1')
    const info = await Sandbox.getInfo(sandbox.sandboxId)
    const shown = JSON.stringify(info.network)
    assert.ok(!shown.includes(SECRET_VALUE) && !shown.includes('token'), shown)
    assert.deepEqual(Object.keys(info.network.rules), ['api.example.test'])
    assert.equal(info.network.rules['api.example.test'][0].transform.headers['X-Api-Key'], '[redacted]')
    // Not in the audit log or the daemon's answers either.
    for (const name of readdirSync(daemon.stateDir).filter((n) => n.startsWith('audit.log'))) {
      assert.ok(!readFileSync(join(daemon.stateDir, name), 'utf8').includes(SECRET_VALUE))
    }
  } finally {
    await sandbox.kill()
    await Secret.destroy('edge-token')
  }
})

test('rules are replaced live; a missing secret fails the request, not the sandbox', async () => {
  const sandbox = await Sandbox.create()
  try {
    assert.equal((await fetchEcho(sandbox, 'http://api.example.test/')).headers['x-api-key'], undefined)
    await sandbox.updateNetwork({
      rules: { '*.example.test': [{ transform: { headers: { 'X-Api-Key': 'wild' } } }] },
    })
    assert.equal((await fetchEcho(sandbox, 'http://other.example.test/')).headers['x-api-key'], 'wild')
    await sandbox.updateNetwork({
      rules: { 'api.example.test': [{ transform: { headers: { 'X-Api-Key': Secret.fill('absent') } } }] },
    })
    const failed = await run(sandbox, 'curl -sS -m 5 -o /dev/null -w "%{http_code}" http://api.example.test/')
    assert.equal(failed.stdout, '502', failed.stderr)
    await sandbox.updateNetwork({})
    assert.equal((await fetchEcho(sandbox, 'http://api.example.test/')).headers['x-api-key'], undefined)
  } finally {
    await sandbox.kill()
  }
  // Bad rules: 400 naming the entry, the sandbox's rules untouched.
  await assert.rejects(Sandbox.create({
    network: { rules: { 'api.example.test': [{ transform: { headers: { 'X-A': 'a\r\nEvil: 1' } } }] } },
  }), /control character/)
  await assert.rejects(Sandbox.create({
    network: { rules: { 'api.example.test': [{ transform: { headers: { Host: 'x' } } }] } },
  }), /Host cannot be injected/)
})

test('egressProxy: TCP goes through the SOCKS5 proxy, filtered first, failing closed', async () => {
  const { address, port, username, password } = fake.socks
  const sandbox = await Sandbox.create({
    network: {
      denyOut: [OTHER],
      egressProxy: { address: `${address}:${port}`, username, password },
    },
  })
  try {
    const info = await Sandbox.getInfo(sandbox.sandboxId)
    assert.deepEqual(info.network.egressProxy, { address: `${address}:${port}`, username })
    const before = (await fake.log()).length
    const echo = await fetchEcho(sandbox, `http://${WEB}/tunnelled`)
    assert.equal(echo.remoteAddress.replace(/^::ffff:/, ''), address, JSON.stringify(echo))
    // A port other than 80 and 443: the TCP echo on 7, through the tunnel too.
    const tcp = await run(sandbox, `python3 -c "import socket; s=socket.create_connection(('${WEB}',7),3); s.sendall(b'ping'); print(s.recv(4).decode())"`)
    assert.equal(tcp.stdout.trim(), 'ping', tcp.stderr)
    const tunnels = (await fake.log()).slice(before).filter((e) => e.service === 'socks' && e.username === username)
    assert.ok(tunnels.some((e) => e.port === 80) && tunnels.some((e) => e.port === 7), JSON.stringify(tunnels))
    // Denied by the rules: never reaches the proxy.
    const seen = (await fake.log()).length
    assert.ok((await fetchEcho(sandbox, `http://${OTHER}/`)).failed)
    assert.ok(!(await fake.log()).slice(seen).some((e) => e.service === 'socks'))
    // The proxy down: connections fail, none goes out directly.
    await fake.setSocks({ enabled: false })
    const down = await fetchEcho(sandbox, `http://${WEB}/down`)
    assert.ok(down.failed, JSON.stringify(down))
    await fake.setSocks({ enabled: true, mode: 'http' })
    assert.ok((await fetchEcho(sandbox, `http://${WEB}/not-socks`)).failed)
  } finally {
    await fake.setSocks({ enabled: true, mode: 'socks5' })
    await sandbox.kill()
  }
  // Wrong password: connections fail.
  const wrong = await Sandbox.create({
    network: { egressProxy: { address: `${address}:${port}`, username, password: 'wrong' } },
  })
  try {
    assert.ok((await fetchEcho(wrong, `http://${WEB}/`)).failed)
  } finally {
    await wrong.kill()
  }
  // By name, resolved by isoboxd; a proxy no sandbox may reach is refused before create.
  const named = await Sandbox.create({
    network: { egressProxy: { address: `proxy.example.test:${port}`, username, password } },
  })
  try {
    const echo = await fetchEcho(named, `http://${WEB}/named`)
    assert.equal(echo.remoteAddress.replace(/^::ffff:/, ''), address, JSON.stringify(echo))
  } finally {
    await named.kill()
  }
  await assert.rejects(Sandbox.create({ network: { egressProxy: { address: '127.0.0.1:1080' } } }),
    /egressProxy.address.*no sandbox may reach/)
  await assert.rejects(Sandbox.create({ network: { egressProxy: { address: 'nowhere.test:1080' } } }),
    /egressProxy.address.*does not resolve/)
})

test('an egressProxy set by an update takes every connection, the open ones included', async () => {
  const { address, port, username, password } = fake.socks
  const sandbox = await Sandbox.create()
  try {
    // A connection held open to the echo host's TCP echo port, made directly.
    const held = await holdConnection(sandbox, WEB, 7)
    await sandbox.updateNetwork({ egressProxy: { address: `${address}:${port}`, username, password } })
    const ended = await held.wait().catch((error) => error)
    assert.notEqual(ended.stdout.trim(), 'open', 'the direct connection was cut')
    const echo = await fetchEcho(sandbox, `http://${WEB}/after`)
    assert.equal(echo.remoteAddress.replace(/^::ffff:/, ''), address, JSON.stringify(echo))
    // An update naming a proxy no sandbox may reach: 400, the rules unchanged.
    await assert.rejects(sandbox.updateNetwork({ egressProxy: { address: '10.0.0.1:1080' } }),
      /no sandbox may reach/)
    assert.equal((await Sandbox.getInfo(sandbox.sandboxId)).network.egressProxy.address,
      `${address}:${port}`)
  } finally {
    await sandbox.kill()
  }
})

test("a sandbox's rules fill in its own API key's secrets only", async () => {
  const [, key] = execFileSync(process.env.ISOBOXD,
    ['--state-dir', daemon.stateDir, 'api-key', 'create', '--name', 'edge-tenant'],
    { encoding: 'utf8' }).trim().split('\t')
  const asB = { apiKey: key }
  await Secret.create('edge-a', 'value-of-a')
  await Secret.create('edge-b', 'value-of-b', asB)
  const sandbox = await Sandbox.create({
    ...asB,
    network: {
      rules: {
        'api.example.test': [{ transform: { headers: { 'X-Mine': Secret.fill('edge-b') } } }],
        'other.example.test': [{ transform: { headers: { 'X-Theirs': Secret.fill('edge-a') } } }],
      },
    },
  })
  try {
    assert.equal((await fetchEcho(sandbox, 'http://api.example.test/')).headers['x-mine'], 'value-of-b')
    const theirs = await run(sandbox, 'curl -sS -m 5 -o /dev/null -w "%{http_code}" http://other.example.test/')
    assert.equal(theirs.stdout, '502', 'another key\'s secret is never filled in')
  } finally {
    await sandbox.kill()
    await Secret.destroy('edge-a')
    await Secret.destroy('edge-b', asB)
  }
})
