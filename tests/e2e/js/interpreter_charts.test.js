// matplotlib figures described as data (`result.chart`), through the unmodified
// @e2b/code-interpreter package: every chart type its SDK knows (line, scatter, bar, pie,
// box-and-whisker, superchart, unknown), with titles, labels, units, scales, ticks and
// element values.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from '@e2b/code-interpreter'
import { startDaemon } from './harness.js'

let daemon
let sandbox
before(async () => {
  daemon = await startDaemon()
  sandbox = await Sandbox.create()
  await sandbox.runCode('import matplotlib.pyplot as plt\nimport numpy as np\nimport datetime')
})
after(async () => {
  await sandbox?.kill()
  await daemon?.stop()
})

async function chartOf(code) {
  const execution = await sandbox.runCode(code)
  assert.equal(execution.error, undefined, JSON.stringify(execution.error))
  const result = execution.results[0]
  assert.ok(result?.png, 'the figure is also an image')
  assert.ok(result.chart, 'a chart')
  return result.chart
}

const isNumber = (x) => typeof x === 'number'
const isString = (x) => typeof x === 'string'

test('line: datetime x, linear y, units, ticks, two series', async () => {
  const chart = await chartOf(`
dates = [datetime.datetime(2023, 9, 1) + datetime.timedelta(hours=i) for i in range(100)]
x = np.linspace(0, 2 * np.pi, 100)
plt.figure(figsize=(10, 6))
plt.plot(dates, np.sin(x), label='sin(x)')
plt.plot(dates, np.cos(x), label='cos(x)')
plt.xlabel("Time (s)")
plt.ylabel("Amplitude (Hz)")
plt.title('Plot of sin(x) and cos(x)')
plt.show()`)
  assert.equal(chart.type, 'line')
  assert.equal(chart.title, 'Plot of sin(x) and cos(x)')
  assert.equal(chart.x_label, 'Time (s)')
  assert.equal(chart.y_label, 'Amplitude (Hz)')
  assert.equal(chart.x_unit, 's')
  assert.equal(chart.y_unit, 'Hz')
  assert.equal(chart.x_scale, 'datetime')
  assert.equal(chart.y_scale, 'linear')
  assert.ok(chart.x_ticks.length > 0 && chart.x_ticks.every(isString))
  assert.ok(!Number.isNaN(new Date(chart.x_ticks[0]).getTime()))
  assert.ok(chart.y_ticks.every(isNumber))
  assert.ok(chart.x_tick_labels.every(isString) && chart.y_tick_labels.every(isString))
  assert.deepEqual(chart.elements.map((e) => e.label), ['sin(x)', 'cos(x)'])
  const [sin, cos] = chart.elements
  assert.equal(sin.points.length, 100)
  assert.ok(sin.points.every(([x, y]) => isString(x) && isNumber(y)))
  assert.equal(new Date(sin.points[0][0]).toISOString(), '2023-09-01T00:00:00.000Z')
  assert.equal(new Date(sin.points[1][0]).toISOString(), '2023-09-01T01:00:00.000Z')
  assert.equal(sin.points[0][1], 0)
  assert.equal(cos.points[0][1], 1)
})

test('line: log scale and a unit in the label', async () => {
  const chart = await chartOf(`
x = np.linspace(0, 100, 100)
plt.figure(figsize=(10, 6))
plt.plot(x, np.exp(x), label='y = e^x')
plt.yscale('log')
plt.xlabel('X-axis')
plt.ylabel('Y-axis (log scale)')
plt.title('Chart with Log Scale on Y-axis')
plt.legend()
plt.grid(True)
plt.show()`)
  assert.equal(chart.type, 'line')
  assert.equal(chart.x_unit, null)
  assert.equal(chart.y_unit, 'log scale')
  assert.equal(chart.x_scale, 'linear')
  assert.equal(chart.y_scale, 'log')
  assert.ok(chart.x_ticks.every(isNumber) && chart.y_ticks.every(isNumber))
  assert.ok(chart.y_tick_labels.every((label) => !label.includes('mathdefault')))
  assert.equal(chart.elements.length, 1)
  assert.equal(chart.elements[0].label, 'y = e^x')
  assert.equal(chart.elements[0].points.length, 100)
  assert.ok(chart.elements[0].points.every(([x, y]) => isNumber(x) && isNumber(y)))
})

test('line: a categorical axis', async () => {
  const chart = await chartOf(`
plt.figure(figsize=(10, 6))
plt.plot([1, 2, 3, 4, 5], ['A', 'B', 'C', 'D', 'E'])
plt.show()`)
  assert.equal(chart.type, 'line')
  assert.equal(chart.x_scale, 'linear')
  assert.equal(chart.y_scale, 'categorical')
  assert.deepEqual(chart.elements[0].points, [[1, 'A'], [2, 'B'], [3, 'C'], [4, 'D'], [5, 'E']])
})

test('scatter: two labelled datasets, no title', async () => {
  const chart = await chartOf(`
plt.xlabel("A")
plt.ylabel("B")
plt.scatter([0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 3, 4, 5], c='blue', label='Dataset 1')
plt.scatter(np.random.rand(10), np.random.rand(10), c='red', label='Dataset 2')
plt.show()`)
  assert.equal(chart.type, 'scatter')
  assert.equal(chart.title, null)
  assert.equal(chart.x_label, 'A')
  assert.equal(chart.y_label, 'B')
  assert.ok(chart.x_ticks.every(isNumber) && chart.y_ticks.every(isNumber))
  assert.ok(chart.x_tick_labels.every(isString) && chart.y_tick_labels.every(isString))
  const [first, second] = chart.elements
  assert.equal(first.label, 'Dataset 1')
  assert.deepEqual(first.points, [[0.1, 1], [0.2, 2], [0.3, 3], [0.4, 4], [0.5, 5]])
  assert.equal(second.label, 'Dataset 2')
  assert.equal(second.points.length, 10)
})

test('bar: labels, values and groups', async () => {
  const chart = await chartOf(`
authors = ['Author A', 'Author B', 'Author C', 'Author D']
plt.figure(figsize=(10, 6))
plt.bar(authors, [100, 200, 300, 400], label='Books Sold', color='blue')
plt.xlabel('Authors')
plt.ylabel('Number of Books Sold')
plt.title('Book Sales by Authors')
plt.tight_layout()
plt.show()`)
  assert.equal(chart.type, 'bar')
  assert.equal(chart.title, 'Book Sales by Authors')
  assert.equal(chart.x_label, 'Authors')
  assert.equal(chart.y_label, 'Number of Books Sold')
  assert.equal(chart.x_unit, null)
  assert.equal(chart.y_unit, null)
  assert.deepEqual(chart.elements, [
    { label: 'Author A', value: 100, group: 'Books Sold' },
    { label: 'Author B', value: 200, group: 'Books Sold' },
    { label: 'Author C', value: 300, group: 'Books Sold' },
    { label: 'Author D', value: 400, group: 'Books Sold' },
  ])
})

test('pie: labels, angles and radii', async () => {
  const chart = await chartOf(`
fig, ax = plt.subplots(figsize=(8, 8))
ax.pie([90, 10], labels=["No", "No, in blue"], autopct='%1.1f%%', startangle=90)
ax.axis('equal')
plt.title('Will I wake up early tomorrow?')
plt.show()`)
  assert.equal(chart.type, 'pie')
  assert.equal(chart.title, 'Will I wake up early tomorrow?')
  assert.deepEqual(chart.elements, [
    { label: 'No', angle: 324, radius: 1 },
    { label: 'No, in blue', angle: 36, radius: 1 },
  ])
})

test('box and whisker: the statistics matplotlib computed', async () => {
  const chart = await chartOf(`
data = {'Class A': [85, 90, 78, 92, 88], 'Class B': [95, 89, 76, 91, 84, 87],
        'Class C': [75, 82, 88, 79, 86]}
fig, ax = plt.subplots(figsize=(10, 6))
ax.set_title('Exam Scores Distribution')
ax.set_xlabel('Class')
ax.set_ylabel('Score')
ax.boxplot(data.values(), labels=data.keys(), patch_artist=True)
plt.tight_layout()
plt.show()`)
  assert.equal(chart.type, 'box_and_whisker')
  assert.equal(chart.title, 'Exam Scores Distribution')
  assert.equal(chart.x_label, 'Class')
  assert.equal(chart.y_label, 'Score')
  assert.equal(chart.x_unit, null)
  assert.equal(chart.y_unit, null)
  const boxes = chart.elements
  assert.deepEqual(boxes.map((b) => b.label), ['Class A', 'Class B', 'Class C'])
  assert.deepEqual(boxes.map((b) => b.outliers), [[], [76], []])
  assert.deepEqual(boxes.map((b) => b.min), [78, 84, 75])
  assert.deepEqual(boxes.map((b) => b.first_quartile), [85, 84.75, 79])
  assert.deepEqual(boxes.map((b) => b.median), [88, 88, 82])
  assert.deepEqual(boxes.map((b) => b.third_quartile), [90, 90.5, 86])
  assert.deepEqual(boxes.map((b) => b.max), [92, 95, 88])
})

test('superchart: a figure with several charts', async () => {
  const chart = await chartOf(`
x1 = np.linspace(0, 10, 100)
fig, axs = plt.subplots(1, 2, figsize=(10, 8))
fig.suptitle('Multiple Charts Example', fontsize=16)
axs[0].plot(x1, np.sin(x1), 'r')
axs[0].set_title('Sine Wave')
axs[0].grid(True)
axs[1].scatter(np.random.rand(5), np.random.rand(5), c='blue', label='Dataset 1')
axs[1].set_xlabel('X')
axs[1].set_ylabel('Y')
axs[1].set_title('Scatter Plot')
plt.show()`)
  assert.equal(chart.type, 'superchart')
  assert.equal(chart.title, 'Multiple Charts Example')
  const [line, scatter] = chart.elements
  assert.equal(chart.elements.length, 2)
  assert.equal(line.type, 'line')
  assert.equal(line.title, 'Sine Wave')
  assert.equal(line.x_label, null)
  assert.equal(line.y_label, null)
  assert.equal(line.elements.length, 1)
  assert.equal(line.elements[0].points.length, 100)
  assert.equal(scatter.type, 'scatter')
  assert.equal(scatter.title, 'Scatter Plot')
  assert.equal(scatter.x_label, 'X')
  assert.equal(scatter.y_label, 'Y')
  assert.equal(scatter.elements[0].points.length, 5)
})

test('unknown: a figure with nothing to describe keeps its title', async () => {
  const chart = await chartOf(`
fig, ax = plt.subplots()
ax.add_artist(plt.Circle((0, 0), 1, color='blue', fill=False, linewidth=2))
ax.add_artist(plt.Circle((0, 0), 2, color='red', fill=False, linewidth=2))
ax.grid(True)
plt.title('Two Concentric Circles')
plt.show()`)
  assert.equal(chart.type, 'unknown')
  assert.equal(chart.title, 'Two Concentric Circles')
  assert.deepEqual(chart.elements, [])
})
