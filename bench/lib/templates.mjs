// bench/run's template rows (issue 20), all through the unmodified `e2b` SDK:
//   - a create from a built template against a create from `base`, on one daemon, no pool,
//     the two interleaved;
//   - a create from a built template's warm pool (`--pool NAME=SIZE` for a user template);
//   - an unchanged rebuild of a 10-step template against its first (uncached) build;
//   - what one `RUN true` step costs (N forced steps against none);
//   - a build from an image in a registry on loopback against skopeo copy + umoci unpack of
//     the same image on the same disk.
// Rows for what this isoboxd cannot do yet (a user template's pool, fromImage) are
// "n/a (reason)", not failures. Template.build polls the build's status every 200 ms (the
// SDK's logsRefreshFrequency), so its wall times are what a user waits, in steps of up to
// 200 ms.
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'

const MIB = 1024 * 1024

export const TEMPLATE_ROWS = ['template.create.nopool', 'template.create.base',
  'template.create.pool', 'template.create.pool.base', 'template.rebuild.cached',
  'template.build.uncached',
  'template.step.run_true', 'template.image.isobox', 'template.image.peer']
// Rows that may be "n/a (reason)": a pool that does not fill, a pull that fails.
export const TEMPLATE_NA_ROWS = ['template.create.pool', 'template.create.pool.base',
  'template.image.isobox']

const TEMPLATE = 'bench-tpl'
const POOL_FILL_S = 60

// Samples per row; `steps` is N of the RUN true row; `imageMiB` the image's filler, in
// three layers.
function countsFor(quick) {
  return quick
    ? { createPairs: 5, poolSize: 2, pool: 5, rebuilds: 3, stepRounds: 3, steps: 10,
        imageRounds: 2, imageMiB: 48 }
    : { createPairs: 50, poolSize: 4, pool: 30, rebuilds: 10, stepRounds: 5, steps: 20,
        imageRounds: 5, imageMiB: 48 }
}

const now = () => Number(process.hrtime.bigint()) / 1e6

// ctx: { repo, quick, warmup, daemonArgs, record, summary }. One daemon for every row but
// the pool's; that one restarts on the same state directory with the pool flag, so the
// template exists when it starts.
export async function templateRows(ctx) {
  const counts = countsFor(ctx.quick)
  const e2eDir = join(ctx.repo, 'tests/e2e/js')
  const { startDaemon } = await import(pathToFileURL(join(e2eDir, 'harness.js')).href)
  const { Sandbox, Template } = createRequire(join(e2eDir, 'package.json'))('e2b')
  const bench = { ...ctx, counts, e2eDir, Sandbox, Template }
  const start = (options) => startDaemon({ ...options,
    args: [...ctx.daemonArgs, ...(options.args ?? [])] })

  console.error('templates: create, rebuild, RUN step, image')
  const daemon = await start({ pools: ['base=0', 'code-interpreter-v1=0'] })
  let keep = false
  try {
    bench.templateId = await buildTemplate(bench, TEMPLATE)
    await createRows(bench)
    await rebuildRows(bench)
    await stepRow(bench)
    await imageRows(bench, daemon)
    keep = true
  } finally {
    await daemon.stop({ keepDir: keep })
  }
  console.error(`templates: create from the ${TEMPLATE} pool`)
  await poolRow(bench, start, daemon.dir)
}

function na(ctx, id, what, reason) {
  ctx.record(id, { what, unit: '', value: `n/a (${reason})`, na: reason })
}

function recordSamples(ctx, id, what, samples, extra = {}) {
  ctx.record(id, { what, unit: 'ms', ...ctx.summary(samples), ...extra })
}

const ratio = (a, b) => (a && b ? +(a / b).toFixed(2) : undefined)

// A template with one layer of content (a RUN as root) and an ENV; checked once. Returns
// its template id.
async function buildTemplate({ Sandbox, Template }, name) {
  const { templateId } = await Template.build(Template().fromTemplate('base')
    .runCmd('mkdir -p /opt/bench && head -c 1048576 /dev/urandom > /opt/bench/blob && ' +
      'echo ready > /opt/bench/ready', { user: 'root' })
    .setEnvs({ BENCH_TEMPLATE: name }), name)
  const sandbox = await Sandbox.create(name, { timeoutMs: 120000 })
  try {
    const out = (await sandbox.commands.run('cat /opt/bench/ready; echo "$BENCH_TEMPLATE"')).stdout
    if (out !== `ready\n${name}\n`) {
      throw new Error(`a sandbox of ${name} printed ${JSON.stringify(out)}`)
    }
  } finally {
    await sandbox.kill()
  }
  return templateId
}

// Sandbox.create(name) until it returns; the kill is not timed.
async function timeCreate(Sandbox, name) {
  const start = now()
  const sandbox = await Sandbox.create(name, { timeoutMs: 120000 })
  const ms = now() - start
  await sandbox.kill()
  return ms
}

// POST /sandboxes {templateID} until its 201, as the create rows of bench/run time a
// create (the 2 ms pool target is this measure); the DELETE is not timed.
async function timeHttpCreate(daemon, templateID) {
  const headers = { 'X-API-KEY': daemon.apiKey, 'Content-Type': 'application/json' }
  const start = now()
  const response = await fetch(`${daemon.url}/sandboxes`,
    { method: 'POST', headers, body: JSON.stringify({ templateID, timeout: 600 }) })
  const text = await response.text()
  const ms = now() - start
  if (response.status !== 201) throw new Error(`create ${templateID}: ${response.status} ${text}`)
  const gone = await fetch(`${daemon.url}/sandboxes/${JSON.parse(text).sandboxID}`,
    { method: 'DELETE', headers })
  await gone.arrayBuffer()
  return ms
}

// Row 1: pairs of creates, the order alternating, so that both see the same machine.
async function createRows(ctx) {
  const { Sandbox, counts } = ctx
  const samples = { [TEMPLATE]: [], base: [] }
  for (let i = -ctx.warmup; i < counts.createPairs; ++i) {
    for (const name of i % 2 ? [TEMPLATE, 'base'] : ['base', TEMPLATE]) {
      const ms = await timeCreate(Sandbox, name)
      if (i >= 0) samples[name].push(ms)
    }
  }
  const base = ctx.summary(samples.base)
  const what = `SDK Sandbox.create('base'), no pool (interleaved with ${TEMPLATE})`
  recordSamples(ctx, 'template.create.base', what, samples.base)
  const ours = ctx.summary(samples[TEMPLATE])
  recordSamples(ctx, 'template.create.nopool',
    `SDK Sandbox.create('${TEMPLATE}'), a built template (RUN + ENV on base), no pool`,
    samples[TEMPLATE], { peer: what, ratio: ratio(ours.p50, base.p50) })
}

// Row 3: the first build of a 10-step template, then unchanged rebuilds (every step a
// cache hit: the build's log says CACHED for each).
async function rebuildRows(ctx) {
  const { Template, counts } = ctx
  const name = 'bench-ten'
  const ten = () => Template().fromTemplate('base')
    .setEnvs({ BENCH_A: 'one' })
    .runCmd('mkdir -p /opt/ten', { user: 'root' })
    .setWorkdir('/opt/ten')
    .runCmd('echo "$BENCH_A" > a.txt', { user: 'root' })
    .setEnvs({ BENCH_B: '${BENCH_A}-two' })
    .runCmd('seq 1 10000 > numbers.txt', { user: 'root' })
    .setWorkdir('/opt/ten/sub')
    .runCmd('touch marker', { user: 'root' })
    .setEnvs({ BENCH_C: 'three' })
    .runCmd('ls -la /opt/ten > listing.txt', { user: 'root' })
  const build = async () => {
    let cached = 0
    const onBuildLogs = (entry) => { if (/^CACHED /.test(entry.message)) ++cached }
    const start = now()
    await Template.build(ten(), name, { onBuildLogs })
    return { ms: now() - start, cached }
  }
  const first = await build()
  const uncached = 'Template.build of a 10-step template (5 RUN, 3 ENV, 2 WORKDIR), ' +
    'its first build (uncached)'
  recordSamples(ctx, 'template.build.uncached', uncached, [first.ms],
    { cachedSteps: first.cached })
  const samples = []
  let fewest = 10
  for (let i = 0; i < counts.rebuilds; ++i) {
    const { ms, cached } = await build()
    samples.push(ms)
    fewest = Math.min(fewest, cached)
  }
  const rebuilt = ctx.summary(samples)
  recordSamples(ctx, 'template.rebuild.cached',
    `Template.build of the same 10-step template, unchanged (${fewest === 10
      ? 'every step CACHED' : `only ${fewest} of 10 steps CACHED`})`,
    samples, { peer: uncached, ratio: ratio(rebuilt.p50, first.ms),
      cachedSteps: fewest })
}

// Row 4: per round, a forced build of N `RUN true` steps and one of none (the order
// alternating); the sample is the difference / N. The row also gives the p50 of the step
// times isoboxd logs ("step 3 took 150 ms"): its own work per step, without the SDK.
async function stepRow(ctx) {
  const { Template, counts } = ctx
  const n = counts.steps
  const template = (steps) => {
    let t = Template().fromTemplate('base')
    for (let i = 0; i < steps; ++i) t = t.runCmd('true')
    return t
  }
  const logged = []
  const onBuildLogs = (entry) => {
    const took = /^step \d+ took (\d+) ms/.exec(entry.message)
    if (took) logged.push(Number(took[1]))
  }
  const timeBuild = async (steps) => {
    const start = now()
    await Template.build(template(steps), `bench-true-${steps}`, { skipCache: true, onBuildLogs })
    return now() - start
  }
  const perStep = []
  const times = { 0: [], [n]: [] }
  for (let i = 0; i < counts.stepRounds; ++i) {
    for (const steps of i % 2 ? [n, 0] : [0, n]) times[steps].push(await timeBuild(steps))
    perStep.push((times[n][i] - times[0][i]) / n)
  }
  const p50 = (samples) => (samples.length ? ctx.summary(samples).p50.toFixed(0) : '?')
  recordSamples(ctx, 'template.step.run_true',
    `one RUN true step: (forced build of ${n} RUN true steps - build of none) / ${n}, per ` +
    `round (build p50 ${p50(times[n])} vs ${p50(times[0])} ms; isoboxd's log: ` +
    `p50 ${p50(logged)} ms per step)`, perStep,
    { steps: n, buildMs: times[n], emptyBuildMs: times[0], loggedStepMs: logged })
}

// ---------------------------------------------------------------- row 2: the warm pool

async function pools(daemon) {
  const response = await fetch(`${daemon.url}/isobox/pools`,
    { headers: { 'X-API-KEY': daemon.apiKey } })
  if (response.status !== 200) throw new Error(`GET /isobox/pools: ${response.status}`)
  return response.json()
}

// The template's pool, under its name or its id: { ready, target, taken }.
async function pool(daemon, templateId, name = TEMPLATE) {
  const all = await pools(daemon)
  return all[name] ?? all[templateId]
}

// The pool's entry once it holds a sandbox, or null after `seconds`.
async function poolReady(daemon, templateId, seconds, name = TEMPLATE) {
  const deadline = Date.now() + seconds * 1000
  for (;;) {
    const entry = await pool(daemon, templateId, name)
    if (entry?.ready >= 1) return entry
    if (Date.now() > deadline) return null
    await sleep(20)
  }
}

// Each sample starts once the pool holds a sandbox (the refill is not timed) and counts
// only if the pool's `taken` grew: a pool hit.
async function poolRow(ctx, start, dir) {
  const { counts } = ctx
  const id = 'template.create.pool'
  const flag = `--pool ${TEMPLATE}=${counts.poolSize}`
  const what = `POST /sandboxes {templateID: '${TEMPLATE}'} from its warm pool (${flag})`
  let daemon
  try {
    daemon = await start({ dir, pools: [`base=${counts.poolSize}`, 'code-interpreter-v1=0',
      `${TEMPLATE}=${counts.poolSize}`] })
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    na(ctx, id, what, `isoboxd refused ${flag}: ${error.message}`)
    return
  }
  try {
    const { samples, base, misses, reason } = await poolSamples(ctx, daemon)
    const peer = `POST /sandboxes {templateID: 'base'} from its warm pool ` +
      `(--pool base=${counts.poolSize}, interleaved)`
    if (reason) {
      na(ctx, id, what, reason)
      na(ctx, 'template.create.pool.base', peer, reason)
    } else {
      recordSamples(ctx, 'template.create.pool.base', peer, base)
      recordSamples(ctx, id, `${what}${misses ? `, ${misses} misses not counted` : ''}`,
        samples, { misses, peer, ratio: ratio(ctx.summary(samples).p50, ctx.summary(base).p50) })
    }
  } catch (error) {
    na(ctx, id, what, `failed: ${error.message.split('\n')[0].slice(0, 240)}`)
  } finally {
    await daemon.stop()
  }
}

// Creates from the pool, each followed by one from base's pool (the peer): { samples,
// base, misses }, or { reason } why there are none.
async function poolSamples(ctx, daemon) {
  const samples = []
  const base = []
  let misses = 0
  for (let i = 0; samples.length < ctx.counts.pool && i < 2 * ctx.counts.pool; ++i) {
    const before = await poolReady(daemon, ctx.templateId, POOL_FILL_S)
    if (!before) {
      return { reason: `the pool did not hold a sandbox within ${POOL_FILL_S} s` +
        `${samples.length ? ` (after ${samples.length} hits)` : ''}` }
    }
    const ms = await timeHttpCreate(daemon, TEMPLATE)
    if ((await pool(daemon, ctx.templateId)).taken > before.taken) samples.push(ms)
    else ++misses
    const baseBefore = await poolReady(daemon, '', POOL_FILL_S, 'base')
    if (baseBefore) {
      const baseMs = await timeHttpCreate(daemon, 'base')
      if ((await pool(daemon, '', 'base')).taken > baseBefore.taken) base.push(baseMs)
    }
  }
  if (!samples.length) return { reason: `no create was a pool hit (${misses} tried)` }
  if (!base.length) return { reason: 'no create from base was a pool hit' }
  return { samples, base, misses }
}

// ---------------------------------------------------------------- row 5: an image

function missingTool() {
  for (const tool of ['docker-registry', 'skopeo', 'umoci']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      return `${tool} is not installed (scripts/install adds it)`
    }
  }
  return null
}

// `mib` MiB of random (incompressible) files under opt/filler/<layer>/, as { path: data }:
// a quarter in 1 MiB files, the rest in 64 KiB ones.
function filler(layer, mib) {
  const files = {}
  const big = Math.max(1, Math.floor(mib / 4))
  for (let i = 0; i < big; ++i) files[`opt/filler/${layer}/big-${i}`] = randomBytes(MIB)
  for (let i = 0; i < (mib - big) * 16; ++i) {
    files[`opt/filler/${layer}/small-${i}`] = randomBytes(64 * 1024)
  }
  return files
}

function writeFiles(rootfs, files) {
  for (const [path, data] of Object.entries(files)) {
    mkdirSync(dirname(join(rootfs, path)), { recursive: true })
    writeFileSync(join(rootfs, path), data)
  }
}

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-2000) })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (code === 0) resolve()
      else reject(new Error(`${cmd} exited ${code ?? signal}: ${stderr.trim().slice(-300)}`))
    })
  })
}

// The peer: what a pull and unpack take with the same tools and no isoboxd, into a
// directory beside isoboxd's state (the same disk).
async function peerPull(ref, dir) {
  const work = mkdtempSync(join(dir, 'bench-peer-'))
  try {
    const start = now()
    await run('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false',
      `docker://${ref}`, `oci:${join(work, 'oci')}:1`])
    await run('umoci', ['unpack', '--image', `${join(work, 'oci')}:1`, join(work, 'bundle')])
    return now() - start
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

const IMAGE_PEER = 'skopeo copy docker://... oci:DIR + umoci unpack of the same image, same disk'
const imageWhat = (ref, mib) => `Template.build(Template().fromImage('${ref}')), skipCache: ` +
  `pull + unpack of busybox, bash and ${mib} MiB of files in 3 layers from docker-registry ` +
  'on loopback'

// Row 5 and its peer. Neither fails the run: without the tools, or when the registry or the
// image cannot be made, the isobox row is n/a and the peer's skipped, with the reason.
async function imageRows(ctx, daemon) {
  const mib = ctx.counts.imageMiB
  const unmeasured = (reason) => {
    na(ctx, 'template.image.isobox', imageWhat('127.0.0.1:PORT/bench/img:1', mib), reason)
    ctx.record('template.image.peer', { what: IMAGE_PEER, skipped: reason })
  }
  const missing = missingTool()
  if (missing) {
    unmeasured(missing)
    return
  }
  const { startRegistry, makeImage } =
    await import(pathToFileURL(join(ctx.e2eDir, 'helpers/registry.js')).href)
  let registry
  try {
    registry = await startRegistry()
    // Three layers: busybox, bash and a third of the filler; then a third more, twice.
    const third = Math.floor(mib / 3)
    const made = now()
    const image = await makeImage({
      registry, name: 'bench/img', tag: '1', files: filler(1, third),
      layers: [2, 3].map((k) => (rootfs) =>
        writeFiles(rootfs, filler(k, k === 3 ? mib - 2 * third : third))),
    })
    console.error(`  (image ${image.ref}: ${image.layers} layers, made in ` +
      `${((now() - made) / 1000).toFixed(1)} s)`)
    await imageRounds(ctx, daemon, image.ref)
  } catch (error) {
    unmeasured(`failed: ${error.message.split('\n')[0].slice(0, 240)}`)
  } finally {
    await registry?.stop()
  }
}

// Rounds of a forced build from the image and the peer's pull + unpack, the order
// alternating. A build that fails makes the isobox row n/a with its error; the peer is
// measured anyway.
async function imageRounds(ctx, daemon, ref) {
  const { Template, counts } = ctx
  const ours = []
  const peer = []
  let failure = null
  for (let i = 0; i < counts.imageRounds; ++i) {
    for (const side of i % 2 ? ['peer', 'isobox'] : ['isobox', 'peer']) {
      if (side === 'peer') {
        peer.push(await peerPull(ref, daemon.dir))
      } else if (!failure) {
        const start = now()
        try {
          await Template.build(Template().fromImage(ref), 'bench-image', { skipCache: true })
          ours.push(now() - start)
        } catch (error) {
          failure = error.message.split('\n')[0].slice(0, 240)
        }
      }
    }
  }
  recordSamples(ctx, 'template.image.peer', IMAGE_PEER, peer)
  const what = imageWhat(ref, counts.imageMiB)
  if (failure) {
    na(ctx, 'template.image.isobox', what, `the build failed: ${failure}`)
    return
  }
  // A speed ratio: the peer's time / isobox's (≥ 0.5x: at least half the peer's speed).
  recordSamples(ctx, 'template.image.isobox', `${what} (ratio: peer time / isobox time)`, ours,
    { peer: IMAGE_PEER, ratio: ratio(ctx.summary(peer).p50, ctx.summary(ours).p50) })
}
