// How palisadectl phrases what decided a verdict — one function for `trace`
// and `flows`, so the two always say the same thing (DESIGN §2.8, §6.12).
export interface DecisionText {
  direction: string;
  decision: string;
  profile?: string;
  ruleIndex?: number;
}

export function decidedBy(d: DecisionText): string {
  switch (d.decision) {
    case "rule":
      return `${d.direction === "inbound" ? "inbound_rules" : "outbound_rules"}[${d.ruleIndex}] of profile ${d.profile || "?"}`;
    case "missing-profile":
      return `profile ${d.profile || "?"} does not exist (deny-all)`;
    case "inactive":
      return "endpoint is inactive";
    case "no-endpoint":
      return "interface has no endpoint";
    case "anti-spoofing":
      return "source address or MAC is not the endpoint's (anti-spoofing)";
    case "workload-to-host":
      return "workload to host is dropped (--workload-to-host drop)";
    default:
      return "no rule matched (default deny)";
  }
}
