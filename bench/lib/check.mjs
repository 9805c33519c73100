// bench_quick_smoke's check: the JSON bench/run wrote names every row, each measured or
// skipped with a reason, and isoboxd's own rows are measured. No timing is judged.
import { readFileSync } from 'node:fs'
import { rowIds } from './rows.mjs'

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
  const ours = /^(create|sdk|sustained\.isobox|density|roundtrip\.(runcode|command)\.sdk|net\.download)/.test(id)
  if (ours && row.skipped) problems.push(`row ${id} was skipped: ${row.skipped}`)
  if (row.n !== undefined && !(row.n > 0) && !id.startsWith('density')) problems.push(`row ${id} has n=${row.n}`)
}
if (problems.length) {
  console.error(problems.join('\n'))
  process.exit(1)
}
console.log(`${doc.rows.length} rows, ${doc.mode} run in ${doc.seconds} s`)
