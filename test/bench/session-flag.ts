// Whether the bench's driver dataplanes set members through a long-lived
// ipset session (DESIGN §6.7), as the driver does by default;
// `--no-ipset-session` measures one `ipset restore` per apply instead (the
// driver's --no-ipset-session), for before/after figures from one build.
export const BENCH_IPSET_SESSION = !process.argv.includes("--no-ipset-session");
