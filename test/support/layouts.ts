// Calculation configs for tests that pin one dataplane layout's rendering (DESIGN §6.4, §6.5).
import { DEFAULT_CALC_CONFIG, type CalcConfig } from "../../services/calc/index.js";

/** The per-endpoint layout (kept for rollback): endpoint chains and an interface dispatch tree. */
export const CHAINS_LAYOUT: CalcConfig = { ...DEFAULT_CALC_CONFIG, layout: "chains" };
/** The set-based layout (the default). */
export const SETS_LAYOUT: CalcConfig = { ...DEFAULT_CALC_CONFIG, layout: "sets" };
