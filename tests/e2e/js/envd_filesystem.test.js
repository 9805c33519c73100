// filesystem.Filesystem and /files through the unmodified `e2b` SDK against a real
// isoboxd: stat, list, makeDir, rename, remove, exists, watchDir, and the SDK errors.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, FileType, FilesystemEventType, FileNotFoundError, SandboxError } from 'e2b'
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

// Resolves with the first event `match` accepts; rejects after `ms`.
function waitForEvent(ms) {
  let resolve
  const promise = new Promise((res, rej) => {
    resolve = res
    setTimeout(() => rej(new Error('no matching event')), ms).unref()
  })
  return { promise, resolve }
}

test('getInfo of a file, a directory and a symlink', async () => {
  await sandbox.files.write('info/f.txt', 'hello world!')
  await sandbox.commands.run('ln -s f.txt info/link && chmod 755 info')
  const file = await sandbox.files.getInfo('info/f.txt')
  assert.equal(file.name, 'f.txt')
  assert.equal(file.type, FileType.FILE)
  assert.equal(file.path, '/home/user/info/f.txt')
  assert.equal(file.size, 12)
  assert.equal(file.mode, 0o644)
  assert.equal(file.permissions, '-rw-r--r--')
  assert.equal(file.owner, 'user')
  assert.equal(file.group, 'user')
  assert.ok(file.modifiedTime instanceof Date && !isNaN(file.modifiedTime))
  const dir = await sandbox.files.getInfo('info')
  assert.equal(dir.type, FileType.DIR)
  assert.equal(dir.mode, 0o755)
  assert.equal(dir.permissions, 'drwxr-xr-x')
  const link = await sandbox.files.getInfo('info/link')
  assert.equal(link.type, FileType.FILE)
  assert.equal(link.symlinkTarget, '/home/user/info/f.txt')
  await assert.rejects(sandbox.files.getInfo('nope.txt'), FileNotFoundError)
  assert.equal(await sandbox.files.exists('info/f.txt'), true)
  assert.equal(await sandbox.files.exists('nope.txt'), false)
})

test('list with depth is pre-order and sorted, paths under the requested dir', async () => {
  await sandbox.commands.run(
    'mkdir -p tree/subdir1/subdir1_1 tree/subdir1/subdir1_2 tree/subdir2 && touch tree/file1.txt')
  const names = async (depth) =>
    (await sandbox.files.list('tree', { depth })).map((e) => e.path.slice('/home/user/tree/'.length))
  assert.deepEqual(await names(1), ['file1.txt', 'subdir1', 'subdir2'])
  assert.deepEqual(await names(2),
    ['file1.txt', 'subdir1', 'subdir1/subdir1_1', 'subdir1/subdir1_2', 'subdir2'])
  await assert.rejects(sandbox.files.list('no-such-dir'), FileNotFoundError)
})

test('makeDir, rename, remove', async () => {
  assert.equal(await sandbox.files.makeDir('made/a/b'), true)
  assert.equal(await sandbox.files.makeDir('made/a/b'), false)
  await sandbox.files.write('made/x.txt', 'x')
  const moved = await sandbox.files.rename('made/x.txt', 'made/moved/y.txt')
  assert.equal(moved.path, '/home/user/made/moved/y.txt')
  assert.equal(await sandbox.files.read('made/moved/y.txt'), 'x')
  await assert.rejects(sandbox.files.rename('made/x.txt', 'z'), FileNotFoundError)
  await sandbox.files.remove('made')
  assert.equal(await sandbox.files.exists('made'), false)
  await sandbox.files.remove('made')  // missing is fine
  await assert.rejects(sandbox.files.read('made/moved/y.txt'), FileNotFoundError)
})

test('root user paths resolve against /root', async () => {
  const info = await sandbox.files.write('root.txt', 'r', { user: 'root' })
  assert.equal(info.path, '/root/root.txt')
  assert.equal((await sandbox.files.getInfo('root.txt', { user: 'root' })).owner, 'root')
  assert.equal(await sandbox.files.read('/root/root.txt', { user: 'root' }), 'r')
})

test('watchDir reports writes, recursive names, nested dirs and entries', async () => {
  await sandbox.files.makeDir('watched/nested')
  const write = waitForEvent(10000)
  const created = waitForEvent(10000)
  const nestedWrite = waitForEvent(10000)
  const handle = await sandbox.files.watchDir('watched', (event) => {
    if (event.type === FilesystemEventType.WRITE && event.name === 'top.txt') write.resolve(event)
    if (event.type === FilesystemEventType.CREATE && event.name === 'later') created.resolve(event)
    if (event.type === FilesystemEventType.WRITE && event.name === 'later/deep.txt') {
      nestedWrite.resolve(event)
    }
  }, { recursive: true, includeEntry: true })
  await sandbox.files.write('watched/top.txt', 'x')
  const event = await write.promise
  assert.equal(event.entry.path, '/home/user/watched/top.txt')
  await sandbox.files.makeDir('watched/later')
  await created.promise
  await sandbox.files.write('watched/later/deep.txt', 'y')
  await nestedWrite.promise
  await handle.stop()

  await assert.rejects(sandbox.files.watchDir('missing-dir', () => {}), FileNotFoundError)
  await assert.rejects(sandbox.files.watchDir('watched/top.txt', () => {}),
    (error) => error instanceof SandboxError && !(error instanceof FileNotFoundError))
})
