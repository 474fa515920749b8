// Audits a running latchkey against the GraphQL-over-HTTP spec with graphql-http's
// auditServer, and fails on any MUST or SHOULD failure (MAY items are reported only).
//
//   node audit.mjs http://127.0.0.1:8080/graphql
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql endpoint url>');
  process.exit(2);
}

const results = await auditServer({ url });
let failures = 0;
for (const result of results) {
  const failed = result.status !== 'ok';
  const required = result.name.startsWith('MUST') || result.name.startsWith('SHOULD');
  if (failed && required) failures += 1;
  const mark = result.status === 'ok' ? 'ok  ' : required ? 'FAIL' : 'note';
  console.log(`${mark} ${result.id} ${result.name}${failed ? `: ${result.reason}` : ''}`);
}
const musts = results.filter((r) => r.name.startsWith('MUST')).length;
const shoulds = results.filter((r) => r.name.startsWith('SHOULD')).length;
console.log(`graphql-http audit: ${results.length} checks (${musts} MUST, ${shoulds} SHOULD), ${failures} MUST/SHOULD failures`);
process.exit(failures === 0 ? 0 : 1);
