// Shared with the fuzz harness and the benchmarks.
export * from "../../support/prng.js";
