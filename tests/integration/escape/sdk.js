// The official E2B SDK as installed for the end-to-end tests (tests/e2e/js/node_modules),
// and the daemon harness from there: the escape suite drives sandboxes exactly like users.
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { dirname, join } from 'node:path'

const e2eDir = join(dirname(fileURLToPath(import.meta.url)), '../../e2e/js')
const require = createRequire(join(e2eDir, 'package.json'))
const e2b = await import(pathToFileURL(require.resolve('e2b')).href)

export const { Sandbox, CommandExitError } = e2b
export const { startDaemon, privateName } =
  await import(pathToFileURL(join(e2eDir, 'harness.js')).href)
