// Validates every ```graphql block of the given Markdown files against schema.graphql with
// graphql-js, so the documentation's examples break when the schema moves. Prints each fault
// and exits non-zero when there is one.
// usage: node docs.mjs SCHEMA FILE...
import { readFileSync } from 'node:fs';
import { buildSchema, parse, validate } from 'graphql';

const [schemaPath, ...files] = process.argv.slice(2);
const schema = buildSchema(readFileSync(schemaPath, 'utf8'));
let blocks = 0;
let faults = 0;
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  for (const [, body] of text.matchAll(/```graphql\n([\s\S]*?)```/g)) {
    blocks += 1;
    try {
      for (const error of validate(schema, parse(body))) {
        faults += 1;
        console.log(`${file}: ${error.message}`);
      }
    } catch (error) {
      faults += 1;
      console.log(`${file}: ${error.message}`);
    }
  }
}
console.log(JSON.stringify({ blocks, faults }));
process.exit(faults === 0 && blocks > 0 ? 0 : 1);
