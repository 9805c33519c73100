// Rich results through the unmodified @e2b/code-interpreter package: matplotlib figures as
// png (plt.show(), savefig, a Figure as the last expression), PIL images, and pandas
// DataFrames as html plus `data`.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
import { startDaemon } from './harness.js'

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  sandbox = await Sandbox.create()
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

const PNG_MAGIC = '89504e470d0a1a0a'
const isPng = (base64) => Buffer.from(base64, 'base64').subarray(0, 8).toString('hex') === PNG_MAGIC

test('plt.show() gives one png result with a text form and no extras', async () => {
  const execution = await sandbox.runCode(`
import matplotlib.pyplot as plt
import numpy as np
x = np.linspace(0, 20, 100)
plt.plot(x, np.sin(x))
plt.show()`)
  assert.equal(execution.results.length, 1)
  const image = execution.results[0]
  assert.ok(isPng(image.png))
  assert.match(image.text, /<Figure size \d+x\d+ with 1 Axes>/)
  assert.deepEqual(image.extra, {})
  assert.equal(image.isMainResult, false)
})

test('savefig writes the file, and the figure still shows', async () => {
  const execution = await sandbox.runCode(`
import matplotlib.pyplot as plt
plt.bar(['a', 'b'], [1, 2])
plt.savefig('/home/user/bars.png')
plt.show()`)
  assert.ok(isPng(execution.results[0].png))
  const saved = await sandbox.files.read('/home/user/bars.png', { format: 'bytes' })
  assert.equal(Buffer.from(saved).subarray(0, 8).toString('hex'), PNG_MAGIC)
})

test('a Figure as the last expression is a png result', async () => {
  const execution = await sandbox.runCode(`
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
plt.close(fig)
fig`)
  assert.equal(execution.results.length, 1)
  assert.ok(isPng(execution.results[0].png))
  assert.equal(execution.results[0].isMainResult, true)
  assert.equal(execution.results[0].chart?.type, 'line')
})

test('PIL images: show(), save() and the last expression are png results', async () => {
  await sandbox.runCode(`
import numpy
from PIL import Image
image = Image.fromarray((numpy.random.rand(16, 16, 3) * 255).astype('uint8')).convert('RGBA')`)
  const shown = await sandbox.runCode('image.show()\nprint("done")')
  assert.ok(isPng(shown.results[0].png))
  assert.deepEqual(shown.logs.stdout, ['done\n'])
  const saved = await sandbox.runCode('image.save("test.png")')
  assert.ok(isPng(saved.results[0].png))
  assert.ok(await sandbox.files.exists('/home/user/test.png'))
  const shownByValue = await sandbox.runCode('image')
  assert.ok(isPng(shownByValue.results[0].png))
  assert.equal(shownByValue.results[0].isMainResult, true)
})

test('a DataFrame is html plus data', async () => {
  const execution = await sandbox.runCode(`
import pandas as pd
pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, float("nan"), 2.0]})`)
  const result = execution.results[0]
  assert.ok(result.html.includes('<table'), result.html)
  assert.match(result.text, /a\s+b\s+c/)
  assert.deepEqual(result.data, { a: [1, 2, 3], b: ['x', 'y', null], c: [0.5, null, 2] })
  assert.ok(result.formats().includes('data'))
})
