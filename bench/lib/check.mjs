// bench_quick_smoke's check: the JSON bench/run wrote names every row, each measured or
// skipped with a reason, and isoboxd's own rows are measured (a few template rows may be
// "n/a (reason)" instead: templates.mjs TEMPLATE_NA_ROWS). No timing is judged.
import { readFileSync } from 'node:fs'
import { rowIds } from './rows.mjs'
import { TEMPLATE_NA_ROWS } from './templates.mjs'
import { PAUSE_NA_ROWS } from './pause.mjs'

const doc = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const problems = []
if (doc.error) problems.push(`the run failed: ${doc.error}`)
const byId = new Map(doc.rows.map((row) => [row.id, row]))
for (const id of rowIds()) {
  const row = byId.get(id)
  if (!row) { problems.push(`row ${id} is missing`); continue }
  const measured = row.p50 !== undefined || row.value !== undefined
  if (!measured && !row.skipped) problems.push(`row ${id} has neither a result nor a skip reason`)
  // Rows that measure isoboxd itself never count as skipped (peers and bench/files.mjs may).
  const ours = /^(create|sdk|sustained\.isobox|density|roundtrip\.(runcode|command)\.sdk|net\.download)/.test(id) ||
    (id.startsWith('template.') && id !== 'template.image.peer') || id.startsWith('pause.')
  if (ours && row.skipped) problems.push(`row ${id} was skipped: ${row.skipped}`)
  // "n/a (reason)": only where this isoboxd may lack the feature (other branches add it).
  if (row.na && !TEMPLATE_NA_ROWS.includes(id) && !PAUSE_NA_ROWS.includes(id)) problems.push(`row ${id} is n/a: ${row.na}`)
  if (row.n !== undefined && !(row.n > 0) && !id.startsWith('density')) problems.push(`row ${id} has n=${row.n}`)
}
if (problems.length) {
  console.error(problems.join('\n'))
  process.exit(1)
}
console.log(`${doc.rows.length} rows, ${doc.mode} run in ${doc.seconds} s`)
