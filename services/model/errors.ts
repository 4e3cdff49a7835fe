/** One problem found in one document. */
export interface ValidationIssue {
  /** "Profile db", "Endpoint hv1/openstack/vm-1/port-1", or "document 3". */
  document: string;
  /** Calico v1 spelling, with a path: "inbound_rules[0].dst_ports[1]". */
  field: string;
  reason: string;
}

/**
 * The single error type of the model boundary: a batch was refused.
 * Nothing was written; `issues` lists every problem found.
 */
export class ValidationError extends Error {
  readonly issues: ValidationIssue[];
  constructor(issues: ValidationIssue[]) {
    super(issues.map(formatIssue).join("; "));
    this.name = "ValidationError";
    this.issues = issues;
  }
}

export function formatIssue(i: ValidationIssue): string {
  return i.field ? `${i.document}: ${i.field}: ${i.reason}` : `${i.document}: ${i.reason}`;
}
