// Sandboxes on the network (issue 19), through the unmodified `e2b` SDK against a real
// isoboxd, offline: a fake internet in a network namespace of the test's own
// (helpers/fakenet.js) holds TEST-NET hosts that echo what they received, and a DNS server
// that isoboxd's resolver forwards to. No test traffic goes anywhere else.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createServer } from 'node:net'
import { Sandbox } from 'e2b'
import { agentPids, startDaemon, until } from './harness.js'
import { FakeNet } from './helpers/fakenet.js'
import { OTHER, WEB, fetchEcho, holdConnection, run } from './helpers/sandbox_net.js'


let fake
let daemon
before(async () => {
  fake = await FakeNet.start()
  fake.setDns({ 'api.example.test': WEB, 'other.example.test': OTHER })
  daemon = await startDaemon({ logLevel: process.env.NET_LOG ?? 'warn', args: ['--dns-server', fake.dnsServer] })
})
after(async () => {
  await daemon?.stop()
  await fake?.stop()
})



function hostLinks() {
  return JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' }))
    .map((link) => link.ifname).filter((name) => /^ib[0-9a-f]{8}$/.test(name))
}

// The host end of the link of the sandbox at `address` (net/links.h HostLinkName).
function linkOf(address) {
  return 'ib' + address.split('.').map((octet) => Number(octet).toString(16).padStart(2, '0'))
    .join('')
}

async function addressOf(sandbox) {
  const out = await sandbox.commands.run("ip -4 -o addr show dev eth0 | awk '{print $4}'")
  return out.stdout.trim().split('/')[0]
}

test('a new sandbox is online: address, route, DNS, NAT', async () => {
  const sandbox = await Sandbox.create()
  try {
    const address = await addressOf(sandbox)
    assert.match(address, /^10\.\d+\.\d+\.\d+$/)
    const echo = await fetchEcho(sandbox, `http://${WEB}/hello`)
    assert.equal(echo.path, '/hello', JSON.stringify(echo))
    assert.notEqual(echo.remoteAddress, address, 'the sandbox address is masqueraded')
    const named = await fetchEcho(sandbox, 'http://api.example.test/by-name')
    assert.equal(named.host, 'api.example.test', JSON.stringify(named))
    const hosts = await sandbox.commands.run('cat /etc/resolv.conf /etc/hosts')
    assert.match(hosts.stdout, /^nameserver 10\./m)
    assert.match(hosts.stdout, new RegExp(`^${address.replace(/\./g, '\\.')}\\s`, 'm'))
    // Root may edit them: they are the sandbox's own files.
    await sandbox.commands.run('echo "203.0.113.10 pinned.test" >> /etc/hosts', { user: 'root' })
    assert.equal((await fetchEcho(sandbox, 'http://pinned.test/')).host, 'pinned.test')
    const info = await Sandbox.getInfo(sandbox.sandboxId)
    assert.equal(info.allowInternetAccess, true)
    assert.deepEqual(info.network.allowOut, [])
    assert.deepEqual(info.network.denyOut, [])
  } finally {
    await sandbox.kill()
  }
})

test('allowInternetAccess: false leaves loopback only, and fails fast', async () => {
  const sandbox = await Sandbox.create({ allowInternetAccess: false })
  try {
    const started = Date.now()
    const echo = await fetchEcho(sandbox, `http://${WEB}/`)
    assert.ok(echo.failed, 'no route out')
    const named = await fetchEcho(sandbox, 'http://api.example.test/')
    assert.equal(named.failed, 6, `name lookups are refused: ${named.stderr}`)
    assert.ok(Date.now() - started < 8000)
    await sandbox.commands.run('python3 -m http.server 8123 --bind 127.0.0.1 >/dev/null 2>&1 &')
    await until('a loopback server', async () =>
      (await run(sandbox, 'curl -s -o /dev/null http://127.0.0.1:8123/')).exitCode === 0)
    assert.equal((await Sandbox.getInfo(sandbox.sandboxId)).allowInternetAccess, false)
  } finally {
    await sandbox.kill()
  }
})

test('never reachable: the host, private and link-local ranges, other sandboxes, IPv6',
  async () => {
    // A server on every host address: a sandbox must reach it on none.
    const server = createServer((socket) => socket.end('host\n'))
    await new Promise((resolve) => server.listen(0, '0.0.0.0', resolve))
    const port = server.address().port
    const [a, b] = await Promise.all([Sandbox.create(), Sandbox.create()])
    try {
      const gateway = (await a.commands.run("ip -4 route show default | awk '{print $3}'"))
        .stdout.trim()
      for (const target of [gateway, '127.0.0.1', fake.hostAddress]) {
        const result = await run(a, `curl -sS -m 2 http://${target}:${port}/`)
        if (target === '127.0.0.1') {
          assert.notEqual(result.stdout, 'host\n', 'loopback is the sandbox\'s own')
        } else {
          assert.notEqual(result.exitCode, 0, `host at ${target}:${port} reached`)
        }
      }
      for (const target of ['169.254.169.254', '10.0.0.1', '192.168.1.1', '172.16.0.1',
        '100.64.0.1']) {
        const result = await run(a, `curl -sS -m 2 http://${target}/`)
        assert.notEqual(result.exitCode, 0, `${target} reached`)
      }
      await b.commands.run('python3 -m http.server 8124 >/dev/null 2>&1 &')
      const other = await addressOf(b)
      await until('b serves', async () =>
        (await run(b, `curl -s -o /dev/null http://${other}:8124/`)).exitCode === 0)
      const across = await run(a, `curl -sS -m 2 http://${other}:8124/`)
      assert.notEqual(across.exitCode, 0, 'a sandbox reached another')
      const v6 = await a.commands.run('ip -6 -o addr show scope global; ip -6 -o addr show dev eth0')
      assert.equal(v6.stdout.trim(), '', 'no IPv6 address besides loopback')
    } finally {
      server.close()
      await Promise.all([a.kill(), b.kill()])
    }
  })

test('denyOut and allowOut by address; getInfo shows them', async () => {
  const denied = await Sandbox.create({ network: { denyOut: ['198.51.100.0/24'] } })
  const only = await Sandbox.create({
    network: { allowOut: [OTHER], denyOut: ['0.0.0.0/0'] },
  })
  try {
    assert.ok((await fetchEcho(denied, `http://${WEB}/`)).failed)
    assert.equal((await fetchEcho(denied, `http://${OTHER}/x`)).path, '/x')
    assert.ok((await fetchEcho(only, `http://${WEB}/`)).failed)
    assert.equal((await fetchEcho(only, `http://${OTHER}/y`)).path, '/y')
    const info = await Sandbox.getInfo(only.sandboxId)
    assert.deepEqual(info.network.allowOut, [OTHER])
    assert.deepEqual(info.network.denyOut, ['0.0.0.0/0'])
  } finally {
    await Promise.all([denied.kill(), only.kill()])
  }
})

test('updateNetwork: new rules within 100 ms, open connections cut', async () => {
  const sandbox = await Sandbox.create()
  try {
    // A connection held open to the echo host's TCP echo port.
    const held = await holdConnection(sandbox, WEB, 7)
    const started = Date.now()
    await Sandbox.updateNetwork(sandbox.sandboxId, { denyOut: [WEB] })
    const cutAfter = await until('the connection is cut', async () => {
      const result = await run(sandbox, `curl -sS -m 1 http://${WEB}/`)
      return result.exitCode !== 0 ? Date.now() - started : 0
    })
    assert.ok(cutAfter < 2000, `denied after ${cutAfter} ms`)
    const ended = await held.wait().catch((error) => error)
    assert.notEqual(ended.stdout.trim(), 'open', 'the held connection ended')
    await Sandbox.updateNetwork(sandbox.sandboxId, { allowOut: [WEB] })
    assert.equal((await fetchEcho(sandbox, `http://${WEB}/back`)).path, '/back')
    await Sandbox.updateNetwork(sandbox.sandboxId, { allowInternetAccess: false })
    assert.ok((await fetchEcho(sandbox, `http://${OTHER}/`)).failed)
    assert.equal((await Sandbox.getInfo(sandbox.sandboxId)).allowInternetAccess, false)
  } finally {
    await sandbox.kill()
  }
})

test('allowOut by domain: HTTP Host and TLS SNI, wildcards, lying DNS, other ports', async () => {
  const sandbox = await Sandbox.create({
    network: { allowOut: ['api.example.test'], denyOut: ['0.0.0.0/0'] },
  })
  const wildcard = await Sandbox.create({
    network: { allowOut: ['*.example.test'], denyOut: ['0.0.0.0/0'] },
  })
  try {
    await sandbox.files.write('/tmp/ca.pem', fake.ca)
    const allowed = await fetchEcho(sandbox, 'http://api.example.test/named')
    assert.equal(allowed.host, 'api.example.test', JSON.stringify(allowed))
    const tls = await fetchEcho(sandbox, 'https://api.example.test/secure', '--cacert /tmp/ca.pem')
    assert.equal(tls.sni, 'api.example.test', JSON.stringify(tls))
    // Denied names: HTTP gets a 403 from the proxy, TLS a closed connection.
    const refused = await run(sandbox, 'curl -sS -m 3 -o /dev/null -w "%{http_code}" http://other.example.test/')
    assert.equal(refused.stdout, '403')
    assert.ok((await fetchEcho(sandbox, 'https://other.example.test/', '--cacert /tmp/ca.pem')).failed)
    // By address, the name's server is denied: the rule is for the name.
    assert.ok((await fetchEcho(sandbox, `http://${OTHER}/`)).failed)
    // A sandbox that lies in DNS reaches the name's real address, not the one it chose.
    const lied = await fetchEcho(sandbox, 'http://api.example.test/lie',
      `--resolve api.example.test:80:${OTHER}`)
    assert.equal(lied.host, 'api.example.test')
    assert.equal(lied.localAddress, WEB, JSON.stringify(lied))
    // Another port to a destination allowed only by name: denied.
    const otherPort = await run(sandbox,
      `timeout 3 bash -c 'exec 3<>/dev/tcp/${WEB}/7; echo hi >&3; head -c2 <&3'`)
    assert.notEqual(otherPort.exitCode, 0)
    assert.equal((await fetchEcho(wildcard, 'http://other.example.test/w')).host, 'other.example.test')
    assert.equal((await fetchEcho(wildcard, 'http://api.example.test/w')).host, 'api.example.test')
  } finally {
    await Promise.all([sandbox.kill(), wildcard.kill()])
  }
})

test('bad rules: 400 naming the entry, the rules unchanged; unknown sandbox 404', async () => {
  await assert.rejects(Sandbox.create({ network: { denyOut: ['10.0.0.1/8'] } }),
    /10\.0\.0\.0\/8/)
  await assert.rejects(Sandbox.create({ network: { allowOut: ['not a host'] } }),
    /not a host/)
  await assert.rejects(Sandbox.create({ network: { egressProxy: { address: 'p:1080' } } }),
    /egressProxy/)
  const sandbox = await Sandbox.create({ network: { denyOut: [WEB] } })
  try {
    await assert.rejects(Sandbox.updateNetwork(sandbox.sandboxId, { denyOut: ['1.2.3.4/33'] }),
      /1\.2\.3\.4\/33/)
    assert.deepEqual((await Sandbox.getInfo(sandbox.sandboxId)).network.denyOut, [WEB])
    assert.ok((await fetchEcho(sandbox, `http://${WEB}/`)).failed)
  } finally {
    await sandbox.kill()
  }
  await assert.rejects(Sandbox.updateNetwork('nosuchsandbox', { denyOut: [] }),
    (error) => error.constructor.name === 'SandboxNotFoundError')
})

test('a kill removes the link; a restarted isoboxd re-adopts the network', async () => {
  const sandbox = await Sandbox.create()
  const link = linkOf(await addressOf(sandbox))
  assert.ok(hostLinks().includes(link), 'the sandbox has a host link')
  await sandbox.kill()
  await until('its link is gone', () => !hostLinks().includes(link))

  let kept = await startDaemon({ onExit: 'keep', args: ['--dns-server', fake.dnsServer] })
  try {
    const live = await Sandbox.create({ network: { denyOut: [OTHER] } })
    const lost = await Sandbox.create()
    const lostAddress = await addressOf(lost)
    await kept.crash()
    // `lost` dies while no isoboxd runs; `live` lives on.
    for (const pid of agentPids(lost.sandboxId)) process.kill(pid, 'SIGKILL')
    kept = await startDaemon({ dir: kept.dir, onExit: 'kill',
      args: ['--dns-server', fake.dnsServer] })
    const again = await Sandbox.connect(live.sandboxId)
    const echoed = await fetchEcho(again, `http://${WEB}/again`)
    assert.equal(echoed.path, '/again', JSON.stringify(echoed))
    assert.ok((await fetchEcho(again, `http://${OTHER}/`)).failed, 'its rules came back')
    const lostLink = linkOf(lostAddress)
    await until('the lost sandbox\'s link to go', () => !hostLinks().includes(lostLink))
  } finally {
    await kept.stop()
  }
})
