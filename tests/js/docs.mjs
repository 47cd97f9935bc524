// Validates GraphQL against schema.graphql with graphql-js: every ```graphql block of the given
// Markdown files, and each given `.graphql` file whole (a document of the web app, whose one
// operation must be named as the file is, since the app sends it by that name). So the
// documentation's examples and the app break here when the schema moves. Prints each fault
// and exits non-zero when there is one.
// usage: node docs.mjs SCHEMA FILE...
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { buildSchema, parse, validate } from 'graphql';

const [schemaPath, ...files] = process.argv.slice(2);
const schema = buildSchema(readFileSync(schemaPath, 'utf8'));
let blocks = 0;
let faults = 0;
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  if (file.endsWith('.graphql')) {
    blocks += 1;
    try {
      const document = parse(text);
      for (const error of validate(schema, document)) {
        faults += 1;
        console.log(`${file}: ${error.message}`);
      }
      const operations = document.definitions.filter((d) => d.kind === 'OperationDefinition');
      const name = basename(file, '.graphql');
      if (operations.length !== 1 || operations[0].name?.value !== name) {
        faults += 1;
        console.log(`${file}: must hold one operation, named ${name}`);
      }
    } catch (error) {
      faults += 1;
      console.log(`${file}: ${error.message}`);
    }
    continue;
  }
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
