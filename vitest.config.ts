import { defineConfig } from "vitest/config"

// CI sets SKSM_VITEST_JSON so .ci/run can print the closing "N passed, N failed" line.
const json = process.env["SKSM_VITEST_JSON"]

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: json ? ["default", ["json", { outputFile: json }]] : ["default"],
  },
})
