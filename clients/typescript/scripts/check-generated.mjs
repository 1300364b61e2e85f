// CI: fail when src/generated/openapi.ts is not what openapi-typescript makes of openapi.json.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "cb-openapi-"));
const fresh = join(dir, "openapi.ts");
try {
  execFileSync("npx", ["--no-install", "openapi-typescript", "openapi.json", "-o", fresh], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const committed = readFileSync("src/generated/openapi.ts", "utf8");
  if (readFileSync(fresh, "utf8") !== committed) {
    console.error(
      "src/generated/openapi.ts is out of date with openapi.json: run `npm run generate` and commit it",
    );
    process.exit(1);
  }
  console.log("src/generated/openapi.ts is up to date with openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
