'use strict'
// Starts tslab's JavaScript/TypeScript kernel the way E2B's clients expect it to behave:
//
//   node isobox_tslab.js <tslab dist directory> <connection file> [--js]
//
// tslab (its converter, executor and ZeroMQ server are used as they are) differs from
// E2B's own JavaScript kernel in two ways that clients see, and this launcher changes both:
//   - the value of the last expression is an `execute_result` (text/plain), so
//     `runCode('1+1', {language: 'js'}).text === '2'`; tslab prints it with console.log;
//   - a failure is an `error` message (and an execute_reply) with ename, evalue and a
//     traceback: the thrown error's name, message and stack, or SyntaxError/CompileError
//     with the compiler's diagnostics; tslab prints them to stderr with no name.
// Silent executions (the interpreter's env var bookkeeping) publish nothing.

const path = require('path')
const util = require('util')

const [distDir, configPath, ...flags] = process.argv.slice(2)
if (!distDir || !configPath) {
  process.stderr.write('usage: isobox_tslab.js <tslab dist dir> <connection file> [--js]\n')
  process.exit(2)
}
const jsKernel = flags.includes('--js')
// TypeScript's watchers poll (stat on a timer) instead of using inotify: a checkpoint
// cannot save inotify watches on the sandbox's overlay /usr (no file handles there), and
// the kernel's memory must be checkpointable. TypeScript reads these once, when it loads;
// user code does not see them.
process.env.TSC_WATCHFILE = 'DynamicPriorityPolling'
process.env.TSC_WATCHDIRECTORY = 'RecursiveDirectoryUsingDynamicPriorityPolling'
const { createConverter } = require(path.join(distDir, 'converter.js'))
delete process.env.TSC_WATCHFILE
delete process.env.TSC_WATCHDIRECTORY
const { createExecutor } = require(path.join(distDir, 'executor.js'))
const { ZmqServer, JupyterHandlerImpl } = require(path.join(distDir, 'jupyter.js'))

// The execution tslab's queue is running (it runs one at a time), or null.
let current = null

// tslab's converters, created on first use; every conversion's diagnostics are kept for
// the running execution so that its error can name them.
class Converters {
  constructor (isJS) {
    this.isJS = isJS
  }

  get node () {
    if (!this._node) this._node = this.wrap(createConverter({ isJS: this.isJS, isBrowser: false }))
    return this._node
  }

  get browser () {
    if (!this._browser) {
      this._browser = this.wrap(createConverter({ isJS: this.isJS, isBrowser: true }))
    }
    return this._browser
  }

  wrap (converter) {
    const convert = converter.convert.bind(converter)
    converter.convert = (prevDecl, src) => {
      const converted = convert(prevDecl, src)
      if (current && converted.diagnostics) current.diagnostics.push(...converted.diagnostics)
      return converted
    }
    return converter
  }

  close () {
    if (this._node) this._node.close()
    if (this._browser) this._browser.close()
  }
}

function thrownError (thrown) {
  if (thrown instanceof Error) {
    const stack = typeof thrown.stack === 'string' ? thrown.stack.split('\n') : []
    return { ename: thrown.name || 'Error', evalue: thrown.message, traceback: stack }
  }
  const text = typeof thrown === 'string' ? thrown : util.inspect(thrown)
  return { ename: 'Error', evalue: text, traceback: [text] }
}

// TypeScript diagnostic codes: 1000-1999 are syntax errors; 2304 "Cannot find name" and
// 2552 "Cannot find name ... Did you mean" are what JavaScript reports as a ReferenceError
// at run time (tslab checks names before running). The rest come from the type checker.
const kCannotFindName = new Set([2304, 2552])

function compileError (diagnostics) {
  const lines = diagnostics.map((d) => {
    const where = d.start ? `${d.start.line + 1}:${d.start.character + 1} - ` : ''
    return `${where}${d.messageText}`
  })
  let ename = 'CompileError'
  if (diagnostics.some((d) => d.code >= 1000 && d.code < 2000)) {
    ename = 'SyntaxError'
  } else if (diagnostics.every((d) => kCannotFindName.has(d.code))) {
    ename = 'ReferenceError'
  }
  const evalue = diagnostics.length === 1 ? String(diagnostics[0].messageText) : lines.join('\n')
  return { ename, evalue, traceback: lines }
}

function plainText (value) {
  return typeof value === 'string' ? value : util.inspect(value)
}

class Handler extends JupyterHandlerImpl {
  constructor (...args) {
    super(...args)
    // After a failure tslab cancels every execution queued in the next 200 ms, which
    // would abort a client's next request; cancel only those already queued.
    this.execQueue.reset = function () {
      this.prev = Promise.resolve()
    }
  }

  async handleExecuteImpl (req, writeStream, writeDisplayData) {
    current = writeStream.execution
    current.input(this.execCount + 1) // tslab counts this execution next
    try {
      return await super.handleExecuteImpl(req, writeStream, writeDisplayData)
    } finally {
      current = null
      // Silent executions do not count, as in Jupyter's own kernels.
      if (req.silent) this.execCount--
    }
  }
}

const convs = new Converters(jsKernel)
void convs.node // loads the compiler now, not at the first execution
const executor = createExecutor(process.cwd(), convs, {
  // tslab's executor calls log() with the last expression's value only.
  log: (value) => current && current.result(value),
  // error() with one argument is a thrown error; with several, a diagnostic, which the
  // converter wrapper has already recorded.
  error: (...args) => {
    if (current && args.length === 1) current.error = thrownError(args[0])
  }
})
const handler = new Handler(executor, jsKernel)

ZmqServer.prototype.handleExecute = async function (sock, msg) {
  const key = this.connInfo.key
  const silent = Boolean(msg.content && msg.content.silent)
  const publish = (type, content) => {
    if (silent) return
    const message = msg.createReply()
    message.header.msg_type = type
    message.content = content
    message.signAndSend(key, this.iopub)
  }
  const execution = {
    diagnostics: [],
    error: null,
    input (count) {
      publish('execute_input', { code: msg.content.code, execution_count: count })
    },
    result (value) {
      publish('execute_result', {
        execution_count: handler.execCount,
        data: { 'text/plain': plainText(value) },
        metadata: {}
      })
    }
  }
  const writeStream = (name, text) => publish('stream', { name, text })
  writeStream.execution = execution
  const writeDisplayData = (data, update) => publish(update ? 'update_display_data' : 'display_data', data)
  // tslab points process.stdout/stderr at the running execution and leaves them there, so
  // that late output reaches the last cell; a silent execution must not take them over.
  const saved = silent ? [process.stdout.write, process.stderr.write] : null
  let content
  try {
    content = await this.handler.handleExecute(msg.content, writeStream, writeDisplayData)
  } finally {
    if (saved) [process.stdout.write, process.stderr.write] = saved
  }
  if (content.status === 'error') {
    const failure = execution.error ||
      (execution.diagnostics.length > 0 ? compileError(execution.diagnostics) : null) ||
      { ename: 'Error', evalue: 'the execution failed', traceback: [] }
    publish('error', failure)
    content = { ...content, ...failure }
  }
  const reply = msg.createReply()
  reply.header.msg_type = 'execute_reply'
  reply.content = content
  reply.signAndSend(key, sock)
}

// ZeroMQ ipc endpoints are "<ip>-<port>", as ipykernel and IRkernel bind them (the
// interpreter's kernels talk over unix sockets, which a checkpoint keeps); tslab's own
// bindSocket would make "<ip>:<port>".
ZmqServer.prototype.bindSocket = async function (sock, port) {
  const conn = this.connInfo
  const separator = conn.transport === 'ipc' ? '-' : ':'
  await sock.bind(`${conn.transport}://${conn.ip}${separator}${port}`)
}

process.on('SIGINT', () => executor.interrupt())
process.on('uncaughtException', (err) => console.error('UncaughtException:', err))
process.on('unhandledRejection', (reason) => console.error('UnhandledPromiseRejection:', reason))
// A kernel that could not bind its sockets must exit, not linger unreachable (the
// unhandledRejection handler above would otherwise keep it alive).
new ZmqServer(handler, configPath).init().catch((err) => {
  process.stderr.write(`isobox_tslab: the kernel could not start: ${err && err.stack}\n`)
  process.exit(1)
})
