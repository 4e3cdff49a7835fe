// Which iptables backend (nft or legacy) the host already uses: detected,
// never assumed. We pick the backend that already holds our chains (a
// restart adopts what is there), else the one that holds any rules, else
// the system default (`iptables --version`).
import type { IpVersion } from "../../model/index.js";
import type { CommandRunner } from "./command-runner.js";

export type Backend = "nft" | "legacy";

export interface IptablesCommands {
  save: string;
  restore: string;
}

export function iptablesCommands(backend: Backend, family: IpVersion): IptablesCommands {
  const base = family === 4 ? "iptables" : "ip6tables";
  return { save: `${base}-${backend}-save`, restore: `${base}-${backend}-restore` };
}

function countRules(save: string): { rules: number; ours: boolean } {
  let rules = 0;
  let ours = false;
  for (const line of save.split("\n")) {
    if (line.startsWith("-A ")) rules++;
    if (line.startsWith(":pal-")) ours = true;
  }
  return { rules, ours };
}

export async function detectBackend(runner: CommandRunner): Promise<Backend> {
  const probe = async (b: Backend) => {
    try {
      const out = await Promise.all([4, 6].map((f) => runner.run(iptablesCommands(b, f as IpVersion).save, [])));
      return out.map((o) => countRules(o.stdout)).reduce((a, c) => ({ rules: a.rules + c.rules, ours: a.ours || c.ours }));
    } catch {
      return undefined;
    }
  };
  const [nft, legacy] = [await probe("nft"), await probe("legacy")];
  if (legacy?.ours && !nft?.ours) return "legacy";
  if (nft?.ours) return "nft";
  if (legacy && legacy.rules > 0 && (!nft || nft.rules === 0)) return "legacy";
  if (nft && nft.rules > 0) return "nft";
  try {
    const v = await runner.run("iptables", ["--version"]);
    if (v.stdout.includes("legacy")) return "legacy";
  } catch { /* fall through */ }
  return nft ? "nft" : "legacy";
}
